"""The garbage collector's tuning and its pauses on /metrics, through HTTP."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from revhub.core.memory import FIRST_GENERATION_THRESHOLD


def _full_collections(client: TestClient, headers: dict[str, str]) -> float:
    text = client.get("/metrics", headers=headers).text
    found = re.search(r'^revhub_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_started_app_times_each_collection_on_metrics(
    client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    headers = auth_headers("analyst")
    assert gc.get_threshold()[0] == FIRST_GENERATION_THRESHOLD
    before = _full_collections(client, headers)
    gc.collect()
    gc.collect()
    assert _full_collections(client, headers) == before + 2
