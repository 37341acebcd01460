"""Publishing: an event is a row added to the publisher's own transaction (the outbox).

It becomes visible to consumers exactly when the domain change commits, and never if it
rolls back. Reading the log in ``seq`` order is safe because publishers take ``seq`` one
transaction at a time: on PostgreSQL they line up on a transaction-scoped advisory lock
before inserting, on SQLite the database's single writer lock already does it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Row, Text, cast, event, func, select
from sqlalchemy.orm import Session

from revhub.core.db import insert_rows, new_id, send_unread, utcnow, with_held_rows
from revhub.core.errors import FieldError, InvalidInput
from revhub.core.events.envelope import TOPICS, Event, EventMetadata, current_correlation_id
from revhub.core.events.models import OutboxEvent

OUTBOX_LOCK_KEY = 0x72657668  # "revh": the advisory lock that orders publishers
LOCKED_BY = "revhub.outbox.locked_by"
HELD = "revhub.outbox.held"
PUBLISHED = "revhub.outbox.published"


class News:
    """Which generation of committed events this process has reached: a consumer that
    found nothing waits for the next one instead of asking the database again and again
    (idle, four consumers polling every 50 ms kept a sixth of a CPU busy)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0
        self._listeners: list[Callable[[], None]] = []

    @property
    def generation(self) -> int:
        return self._generation

    def arrived(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
        for listener in self._listeners:
            listener()

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` at each arrival too (how the worker's own process hears of this
        one's commits); returns what stops that."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def wait_past(self, generation: int, timeout: float) -> bool:
        """Wait until events newer than ``generation`` commit here, or ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generation != generation, timeout)


NEWS = News()
"""Events committed by this process. Another process's (a CLI command's, or an API's when
the worker runs apart) are found by the consumers' next poll."""


@event.listens_for(Session, "after_commit")
def _announce(session: Session) -> None:
    if session.info.pop(PUBLISHED, False):
        NEWS.arrived()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(PUBLISHED, None)


@event.listens_for(Session, "after_soft_rollback")
def _unlocked(session: Session, _previous: Any) -> None:
    """A rolled-back savepoint releases the publishers' lock if it was taken inside it (and
    in a pipeline that failed, it may never have run): take it again before the next
    INSERT. Taking it twice in one transaction is harmless."""
    session.info.pop(LOCKED_BY, None)


def publish(
    session: Session,
    *,
    topic: str,
    event_type: str,
    tenant_id: str,
    payload: dict[str, Any],
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> Event:
    """Add an event to the caller's transaction; it is delivered only if that commits."""
    if topic not in TOPICS:
        raise InvalidInput(
            [FieldError("topic", f"unknown topic {topic!r}; one of {sorted(TOPICS)}")]
        )
    event = Event(
        event_id=new_id(),
        event_type=event_type,
        tenant_id=tenant_id,
        timestamp=occurred_at or utcnow(),
        payload=payload,
        metadata=EventMetadata(correlation_id=correlation_id or current_correlation_id()),
    )
    row = {
        "event_id": event.event_id,
        "topic": topic,
        "event_type": event_type,
        "tenant_id": tenant_id,
        "occurred_at": event.timestamp,
        "payload": event.model_dump(mode="json")["payload"],
        "meta": event.metadata.model_dump(mode="json"),
    }
    held = session.info.get(HELD)
    if held is not None:
        held.append(row)
        return event
    _line_up(session)
    session.add(OutboxEvent(**row))
    return event


@contextmanager
def held_until_done(session: Session) -> Iterator[None]:
    """Publish what the block publishes in one multi-row INSERT when it ends, or nothing if
    it raises. For batch work that publishes thousands of events: as ORM rows each would be
    an ``INSERT … RETURNING seq`` of its own. Events published earlier in the transaction
    are flushed first, so ``seq`` still follows publishing order, and on PostgreSQL the
    publishers' lock is taken only for the INSERT at the end, not for the whole batch.
    Inside ``batched_writes`` the lock goes before the batch's held rows and the INSERT after
    them (on PostgreSQL in their pipeline: a capture batch's two round trips fewer): the lock
    still comes before any row the batch writes, as it did when it was taken here, so
    batches and other publishers queue on it rather than on each other's rows."""
    if session.info.get(HELD) is not None:
        yield
        return
    session.flush()
    held: list[dict[str, Any]] = []
    session.info[HELD] = held
    try:
        yield
    finally:
        del session.info[HELD]
    if not held:
        return
    if with_held_rows(session, partial(_line_up, session), first=True):
        with_held_rows(session, partial(insert_rows, session, OutboxEvent, held))
    else:
        _line_up(session)
        insert_rows(session, OutboxEvent, held)


def _line_up(session: Session) -> None:
    """Take the publishers' lock once per transaction (the row is inserted at the next
    flush, still inside the transaction and so still behind the lock). Its result is not
    read, so it can go in a pipeline."""
    session.info[PUBLISHED] = True
    if session.get_bind().dialect.name != "postgresql":
        return
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(LOCKED_BY) is transaction:
        return
    send_unread(session, "SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK_KEY,))
    session.info[LOCKED_BY] = transaction


LOG_COLUMNS = (
    OutboxEvent.seq,
    OutboxEvent.event_id,
    OutboxEvent.topic,
    OutboxEvent.event_type,
    OutboxEvent.tenant_id,
    OutboxEvent.occurred_at,
    cast(OutboxEvent.payload, Text).label("payload"),
    cast(OutboxEvent.meta, Text).label("meta"),
)
"""What a reader of the log needs of a row: everything but ``relayed_at``, the payload and
metadata as their JSON text (decoded by :func:`to_event`)."""


def to_event(row: Row[Any]) -> Event:
    return Event(
        event_id=row.event_id,
        event_type=row.event_type,
        tenant_id=row.tenant_id,
        timestamp=row.occurred_at,
        payload=json.loads(row.payload),
        metadata=EventMetadata(**json.loads(row.meta)),
    )


def read_after(
    session: Session, *, position: int, topics: Iterable[str], limit: int
) -> list[Row[Any]]:
    """What follows ``position`` on ``topics``, oldest first: each event's ``seq``, ``topic``
    and ``event_type`` only. Every consumer reads every event of its topics, and most
    handle few of them: reading the payloads of all (a touchpoint batch's events carry a
    thousand touches) was most of the embedded worker's time; :func:`events_at` reads the
    ones a consumer handles."""
    query = (
        select(OutboxEvent.seq, OutboxEvent.topic, OutboxEvent.event_type)
        .where(OutboxEvent.seq > position, OutboxEvent.topic.in_(list(topics)))
        .order_by(OutboxEvent.seq)
        .limit(limit)
    )
    return list(session.connection().execute(query))


def events_at(session: Session, seqs: list[int]) -> dict[int, Row[Any]]:
    """The events at ``seqs`` as plain rows of :data:`LOG_COLUMNS`, by ``seq``."""
    if not seqs:
        return {}
    query = select(*LOG_COLUMNS).where(OutboxEvent.seq.in_(seqs))
    rows: list[Row[Any]] = list(session.connection().execute(query))
    return {row.seq: row for row in rows}


def count_after(session: Session, *, position: int, topics: Iterable[str]) -> int:
    query = (
        select(func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.seq > position, OutboxEvent.topic.in_(list(topics)))
    )
    return int(session.scalar(query) or 0)


def unrelayed(session: Session, *, limit: int, after: int = 0) -> list[Row[Any]]:
    """The oldest ``limit`` events not yet relayed whose ``seq`` is above ``after``."""
    query = (
        select(*LOG_COLUMNS)
        .where(OutboxEvent.relayed_at.is_(None), OutboxEvent.seq > after)
        .order_by(OutboxEvent.seq)
        .limit(limit)
    )
    return list(session.connection().execute(query))


def last_seq(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(OutboxEvent.seq), 0))) or 0)


def oldest_unrelayed_at(session: Session) -> datetime | None:
    return session.scalar(
        select(func.min(OutboxEvent.occurred_at)).where(OutboxEvent.relayed_at.is_(None))
    )
