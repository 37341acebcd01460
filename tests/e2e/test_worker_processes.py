"""Real `revhub worker` processes on real Redis: crashes and load sharing.

A worker killed with SIGKILL mid-batch and a fresh one started after it leave every effect
exactly once; two workers on one Redis split a topic's events and never both apply one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from revhub.core.db import Database
from revhub.migrations import upgrade
from tests.e2e.effects_plugin import effects, metadata
from tests.eventing import publish_leads

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 300


@pytest.fixture
def worker_env(
    tmp_path: Path, scratch_database_url: str, redis_url: str
) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVHUB_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "REVHUB_DATA_DIR": str(tmp_path / "data"),
            "REVHUB_DATABASE_URL": scratch_database_url,
            "REVHUB_REDIS_URL": redis_url,
            "REVHUB_REDIS_PREFIX": f"revhub-e2e-{uuid.uuid4().hex[:8]}:",
            "REVHUB_BUS": "redis",
            "REVHUB_VISIBILITY_TIMEOUT_SECONDS": "1",
            "REVHUB_PLUGINS": '["tests.e2e.effects_plugin"]',
        }
    )
    yield env
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{env['REVHUB_REDIS_PREFIX']}*"):
        client.delete(key)


@pytest.fixture
def hub_db(scratch_database_url: str) -> Iterator[Database]:
    upgrade(scratch_database_url)
    db = Database.from_url(scratch_database_url)
    metadata.create_all(db.engine)
    yield db
    db.engine.dispose()


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "revhub", "worker"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _counts(db: Database) -> tuple[int, int]:
    with db.transaction() as session:
        total = session.scalar(select(func.count()).select_from(effects)) or 0
        distinct = session.scalar(select(func.count(func.distinct(effects.c.event_id)))) or 0
    return int(total), int(distinct)


def _wait_until_started(logs: list[Path], timeout: float = 30) -> None:
    """Until every worker has started its consumer threads (its log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(log.exists() and "worker_started" in log.read_text() for log in logs):
            time.sleep(0.5)  # from started to blocked in XREADGROUP is milliseconds
            return
        time.sleep(0.1)
    raise AssertionError(f"not every worker started within {timeout} s")


def _wait_for(db: Database, predicate: object, timeout: float = 40) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = _counts(db)
        if predicate(*counts):  # type: ignore[operator]
            return counts
        time.sleep(0.1)
    raise AssertionError(f"timed out; effects (rows, distinct events) = {_counts(db)}")


@pytest.mark.redis
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_worker_stopped_mid_batch_and_a_new_one_leave_each_effect_once(
    hub_db: Database,
    worker_env: dict[str, str],
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    stop: signal.Signals,
) -> None:
    """SIGKILL: the dead worker's unacknowledged entries are reclaimed after the visibility
    timeout. SIGTERM: the worker finishes the event in hand and exits 0."""
    publish_leads(hub_db, EVENTS, tenants=7)
    first = _start(worker_env, tmp_path / "first.log")
    workers.append(first)
    _wait_for(hub_db, lambda rows, _distinct: rows >= 40)
    first.send_signal(stop)
    code = first.wait(15)
    rows_at_stop, _ = _counts(hub_db)
    assert rows_at_stop < EVENTS, "the stop must land mid-way for this test to mean anything"
    if stop == signal.SIGTERM:
        assert code == 0
        assert "Traceback" not in (tmp_path / "first.log").read_text()
    workers.append(_start(worker_env, tmp_path / "second.log"))
    _wait_for(hub_db, lambda _rows, distinct: distinct == EVENTS)
    time.sleep(1.5)  # anything redelivered after the visibility timeout would land by now
    assert _counts(hub_db) == (EVENTS, EVENTS)


@pytest.mark.redis
def test_two_workers_split_the_load_and_never_both_apply_an_event(
    hub_db: Database,
    worker_env: dict[str, str],
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    env = {**worker_env, "E2E_EFFECT_SECONDS": "0.01"}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers += [_start(env, log) for log in logs]
    _wait_until_started(logs)
    for _ in range(6):
        publish_leads(hub_db, EVENTS // 6, tenants=7)
        time.sleep(0.2)
    _wait_for(hub_db, lambda _rows, distinct: distinct == EVENTS)
    time.sleep(1.0)
    assert _counts(hub_db) == (EVENTS, EVENTS)
    with hub_db.transaction() as session:
        per_worker = dict(
            session.execute(select(effects.c.pid, func.count()).group_by(effects.c.pid)).all()
        )
    assert set(per_worker) == {w.pid for w in workers}, per_worker
    assert min(per_worker.values()) >= EVENTS // 10, per_worker
