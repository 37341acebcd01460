"""The embedded database's transactions: one writer at a time, readers beside it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import DateTime, event, text
from sqlalchemy.dialects import sqlite

from revhub.core.db import Database, UTCDateTime


def _sqlite(tmp_path: Path) -> Database:
    db = Database.from_url(f"sqlite:///{tmp_path / 'gate.db'}")
    with db.transaction() as session:
        session.execute(text("CREATE TABLE item (n INTEGER)"))
        session.execute(text("INSERT INTO item VALUES (1)"))
    return db


def test_a_reader_does_not_queue_behind_the_writer(tmp_path: Path) -> None:
    """The worker's pollers read while a request holds the write lock: they see the last
    committed state at once instead of waiting for the writer (or for the gate's 30 s)."""
    db = _sqlite(tmp_path)
    with db.transaction() as writer:
        writer.execute(text("INSERT INTO item VALUES (2)"))
        started = time.monotonic()
        with db.reading() as reader:
            seen = reader.scalar(text("SELECT count(*) FROM item"))
        assert seen == 1
        assert time.monotonic() - started < 5
    with db.reading() as reader:
        assert reader.scalar(text("SELECT count(*) FROM item")) == 2
    db.engine.dispose()


def test_writers_still_take_turns(tmp_path: Path) -> None:
    """A second writer waits for the first to commit and then sees its row (no
    SQLITE_BUSY half-way through)."""
    db = _sqlite(tmp_path)
    order: list[str] = []
    holding = threading.Event()

    def second() -> None:
        holding.wait(5)
        with db.transaction() as session:
            count = session.scalar(text("SELECT count(*) FROM item"))
            order.append(f"second saw {count}")
            session.execute(text("INSERT INTO item VALUES (3)"))

    thread = threading.Thread(target=second)
    thread.start()
    with db.transaction() as session:
        session.execute(text("INSERT INTO item VALUES (2)"))
        holding.set()
        time.sleep(0.2)
        order.append("first commits")
    thread.join(10)
    assert order == ["first commits", "second saw 2"]
    db.engine.dispose()


def test_writers_in_two_processes_take_turns_at_the_lock_file(tmp_path: Path) -> None:
    """Two engines on one file, as the API and its capture process hold: the second
    writer waits at ``<database>-writer.lock`` (owner-only) while the first holds it,
    then goes, and sees the first one's row."""
    first, second = _sqlite(tmp_path), Database.from_url(f"sqlite:///{tmp_path / 'gate.db'}")
    lock = tmp_path / "gate.db-writer.lock"
    seen: list[int | None] = []

    def write() -> None:
        with second.transaction() as session:
            seen.append(session.scalar(text("SELECT count(*) FROM item")))
            session.execute(text("INSERT INTO item VALUES (3)"))

    with first.transaction() as session:
        session.execute(text("INSERT INTO item VALUES (2)"))
        other = threading.Thread(target=write)
        other.start()
        other.join(0.3)
        assert other.is_alive()  # waiting for the first writer, not failed
    other.join(10)

    assert seen == [2]
    assert lock.stat().st_mode & 0o777 == 0o600
    for db in (first, second):
        db.engine.dispose()


def test_bursts_of_readers_reuse_the_embedded_databases_connections(tmp_path: Path) -> None:
    """Three bursts of 12 threads reading at once open 12 connections at most, not 12 a
    burst: a connection returned is kept for the next burst, not closed (each new one costs
    a file open and its PRAGMAs, on every request's API-key check under load)."""
    db = _sqlite(tmp_path)
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda conn, _record: opened.append(conn))

    def burst(readers: int) -> None:
        together = threading.Barrier(readers)

        def read() -> None:
            with db.reading() as reader:
                assert reader.scalar(text("SELECT count(*) FROM item")) == 1
                together.wait(10)  # every reader holds its connection at once

        threads = [threading.Thread(target=read) for _ in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    for _ in range(3):
        burst(12)
    assert len(opened) <= 12
    db.engine.dispose()


def test_the_write_ahead_log_is_copied_into_the_database_beside_the_writers(
    tmp_path: Path,
) -> None:
    """Commits leave SQLite's log to a thread of its own (no commit pays for a checkpoint):
    what they wrote reaches the database file without any further write or a restart."""
    db = _sqlite(tmp_path)
    file = tmp_path / "gate.db"
    with db.transaction() as session:
        session.execute(text("CREATE TABLE blob (b BLOB)"))
    time.sleep(1)
    before = file.stat().st_size
    with db.transaction() as session:
        for _ in range(64):
            session.execute(text("INSERT INTO blob VALUES (randomblob(16384))"))
    assert file.stat().st_size == before  # the commit itself copied nothing
    deadline = time.monotonic() + 10
    while file.stat().st_size < before + 64 * 16384 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert file.stat().st_size >= before + 64 * 16384
    db.engine.dispose()


def test_utc_times_are_stored_on_sqlite_exactly_as_sqlalchemys_datetime_stores_them() -> None:
    """The one-step text form must sort and read back like SQLAlchemy's own."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    berlin = timezone(timedelta(hours=1))
    for value in (
        datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 30, 15, 250, tzinfo=UTC),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 30, 0, 999999, tzinfo=berlin),
    ):
        assert ours(value) == theirs(value.astimezone(UTC))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        ours(datetime(2026, 1, 1))
