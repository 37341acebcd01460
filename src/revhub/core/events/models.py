"""Outbox, consumer offsets, applied-event markers and dead letters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, SeqType, new_id, utcnow


class OutboxEvent(Base):
    """The log: written in the publisher's transaction, read in ``seq`` order.

    Publishing transactions line up on a lock before taking their ``seq`` (see
    ``outbox.publish``), so ``seq`` order is commit order and a reader that has seen ``seq``
    n has seen every event before it.

    The relay finds what it has yet to send through a partial index of the unrelayed rows in
    ``seq`` order. Marking a row relayed leaves its old entry in an index until vacuum; with
    an index on ``(relayed_at, seq)`` PostgreSQL's bitmap scan visited every event relayed
    since (7,900 entries and 690 pages, 2 ms, after a minute of 200 leads/s, at each of some
    40 relays a second), where a plain scan in ``seq`` order marks such entries dead as it
    passes them and the next scan skips them.
    """

    __tablename__ = "outbox_event"
    __table_args__ = (
        Index(
            "ix_outbox_event_unrelayed",
            "seq",
            postgresql_where=text("relayed_at IS NULL"),
            sqlite_where=text("relayed_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},  # never reuse a seq, even after pruning the newest
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    topic: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    relayed_at: Mapped[datetime | None]


class ConsumerOffset(Base):
    """Where a consumer group has read the local log up to."""

    __tablename__ = "consumer_offset"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(SeqType, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AppliedEvent(Base):
    """Written in the same transaction as a consumer's effect: the effect happens once."""

    __tablename__ = "applied_event"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A delivery that failed its last attempt, kept with its error until replayed or dropped."""

    __tablename__ = "dead_letter"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    consumer: Mapped[str] = mapped_column(String(64), index=True)
    event_id: Mapped[uuid.UUID]
    topic: Mapped[str] = mapped_column(String(64))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
