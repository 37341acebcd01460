"""A running hub lets a thread whose database answer is ready have the GIL within 1 ms."""

from __future__ import annotations

import sys

from fastapi.testclient import TestClient

from revhub.core.interpreter import SWITCH_INTERVAL_S


def test_the_server_shortens_the_thread_switch_interval(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert sys.getswitchinterval() == SWITCH_INTERVAL_S < 0.005
