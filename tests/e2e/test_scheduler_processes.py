"""A job fires once with three workers running: real `revhub worker` processes on one
database (a fresh SQLite file, or a fresh PostgreSQL database under CI's configuration)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from revhub.core.db import make_engine
from revhub.core.jobs.models import JobRun
from tests.e2e.conftest import revhub_cli

EVERY_TWO_SECONDS = "* * * * * */2"  # a sixth field: seconds


@pytest.fixture
def worker_env(tmp_path: Path, scratch_database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVHUB_")}
    env.update(
        {
            "REVHUB_DATA_DIR": str(tmp_path / "data"),
            "REVHUB_DATABASE_URL": scratch_database_url,
            "REVHUB_JWT_SECRET": "j" * 40,
            "REVHUB_PII_KEY": "p" * 40,
            "REVHUB_AUDIT_KEY": "a" * 40,
            "REVHUB_JOB_SCHEDULES": json.dumps({"outbox_prune": EVERY_TWO_SECONDS}),
            "REVHUB_LOG_LEVEL": "DEBUG",  # shows the workers that lost a run to another
        }
    )
    if os.environ.get("REVHUB_BUS") == "redis":
        env.update(REVHUB_BUS="redis", REVHUB_REDIS_URL=os.environ["REVHUB_REDIS_URL"])
    revhub_cli(env, "migrate")
    return env


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    logs = [tmp_path / f"worker-{i}.log" for i in range(3)]
    started = []
    for log in logs:
        with log.open("w") as out:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "revhub", "worker"],
                    env=worker_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
    _wait_for(lambda: all("worker_started" in log.read_text() for log in logs), "workers start")
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        process.wait(timeout=15)
    for log in logs:
        print(log.name, log.read_text()[-2000:])  # shown when the test fails


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_job_fires_once_with_three_workers_running(
    workers: list[subprocess.Popen[str]], scratch_database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(scratch_database_url, poolclass=NullPool)

    def runs() -> list[JobRun]:
        with Session(engine) as session:
            return [*session.scalars(select(JobRun).where(JobRun.job == "outbox_prune"))]

    everyone_ticking = datetime.now(UTC) + timedelta(seconds=1.5)  # all started, one tick in

    def two_consecutive_finished() -> bool:
        """Two fire times in a row, after every worker was ticking: each saw all three try."""
        times = sorted(
            r.scheduled_for
            for r in runs()
            if r.finished_at is not None and r.scheduled_for and r.scheduled_for > everyone_ticking
        )
        return any(b - a == timedelta(seconds=2) for a, b in pairwise(times))

    try:
        _wait_for(two_consecutive_finished, "two consecutive fire times to finish")
        assert all(p.poll() is None for p in workers), "every worker is still running"
        fired = runs()
    finally:
        engine.dispose()
    per_time = Counter(r.scheduled_for for r in fired)
    assert per_time and set(per_time.values()) == {1}, f"one run per fire time: {per_time}"
    assert {r.trigger for r in fired} == {"schedule"}
    assert {r.status for r in fired if r.finished_at} == {"succeeded"}
    assert all(isinstance(t, datetime) and t.microsecond == 0 for t in per_time)
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(3)]
    assert sum(log.count('"job_taken"') for log in logs) >= 1, "others tried the same time"
    for process in workers:
        process.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=15) for p in workers] == [0, 0, 0]
