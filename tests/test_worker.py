"""The embedded worker in a child process of the API (``REVHUB_WORKER_PROCESS``, the
default): it applies what the API commits, comes back when killed, and stops with the API.
The child commits for real, so these tests use a scratch database of their own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from revhub.api import create_app
from revhub.core.db import Database
from revhub.core.events import outbox
from revhub.core.settings import Settings
from revhub.worker import WorkerProcess
from tests.factories import ApiKeyFactory

KEYS = "/api/v1/keys"
CONSUMERS = "/api/v1/events/consumers"
PATIENCE_S = 30.0


@pytest.fixture
def served(
    scratch_database_url: str, scratch_db: Database, settings: Settings
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The API on a scratch database in embedded mode, its worker in a child process."""
    with scratch_db.transaction() as session:
        _key, token = ApiKeyFactory(session).create(role="admin")
    with TestClient(_embedded(settings, scratch_database_url, scratch_db)) as client:
        yield client, {"X-API-Key": token}


def _embedded(settings: Settings, url: str, db: Database) -> FastAPI:
    settings = settings.model_copy(update={"database_url": url, "embedded_worker": True})
    assert settings.mode == "embedded" and settings.worker_process
    return create_app(settings, db=db, check_schema=False)


def _apart(client: TestClient) -> WorkerProcess:
    apart = client.app.state.worker_process  # type: ignore[attr-defined]
    assert isinstance(apart, WorkerProcess)
    return apart


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not check():
        assert time.monotonic() < deadline, f"not within {PATIENCE_S:g} s: {what}"
        time.sleep(0.05)


def _caught_up(client: TestClient, headers: dict[str, str]) -> bool:
    """Every active consumer of the ``platform`` topic (API keys' events) has read all of it,
    as ``GET /events/consumers`` tells an admin."""
    answer = client.get(CONSUMERS, headers=headers)
    assert answer.status_code == 200, answer.text
    platform = [c for c in answer.json() if "platform" in c["topics"] and c["status"] == "active"]
    assert platform, answer.json()
    return all(c["lag"] == 0 for c in platform)


def _new_key(client: TestClient, headers: dict[str, str], name: str) -> None:
    answer = client.post(KEYS, headers=headers, json={"name": name, "role": "marketing"})
    assert answer.status_code == 201, answer.text


def test_the_worker_process_applies_what_the_api_commits(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = served
    apart = _apart(client)
    assert apart.pid is not None and apart.pid != os.getpid()
    news = outbox.NEWS.generation

    _new_key(client, headers, "zapier")

    assert outbox.NEWS.generation > news  # the commit was announced, and so sent to the child
    _eventually(lambda: _caught_up(client, headers), "the consumers read the key's event")


def test_a_killed_worker_process_is_started_again_and_goes_on(
    served: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = served
    apart = _apart(client)
    first = apart.pid
    assert first is not None

    os.kill(first, signal.SIGKILL)
    _eventually(lambda: apart.pid not in (None, first), "a new worker process")
    _new_key(client, headers, "after-the-crash")

    _eventually(lambda: _caught_up(client, headers), "the new process read the event")


def test_the_worker_process_stops_cleanly_with_the_api(
    scratch_database_url: str, scratch_db: Database, settings: Settings
) -> None:
    with TestClient(_embedded(settings, scratch_database_url, scratch_db)) as client:
        apart = _apart(client)
        child = apart.process
        assert child is not None and child.is_alive()

    assert child.exitcode == 0  # it left on the closed pipe, not killed
    assert apart.pid is None
