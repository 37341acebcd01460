"""``outbox_prune``: the kernel's own job, deleting outbox rows nobody needs any more.

A row may go when it is older than the retention (``REVHUB_OUTBOX_RETENTION_DAYS``) **and**
no consumer can still need it:

* local bus — the outbox is the log, so every consumer *with a handler* must have read past
  it (its ``consumer_offset.position``; a consumer that has never polled has position 0 and
  keeps everything). Consumers without a handler yet are not waited for: when their domain
  lands they start from what the retention has kept.
* Redis bus — the stream holds the events, so a row may go once it has been relayed.

The retention keeps a window of recent events to inspect or replay whichever way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.orm import Session

from revhub.core.events.models import ConsumerOffset, OutboxEvent
from revhub.core.jobs.registry import JobContext, JobHandler

NAME = "outbox_prune"
SCHEDULE = "30 3 * * *"
BATCH = 1000


def outbox_prune(*, retention: timedelta, bus: str, consumers: Iterable[str]) -> JobHandler:
    """The handler, for the configured retention, bus kind and consumers with a handler."""
    names = sorted(consumers)

    def handle(session: Session, context: JobContext) -> int:
        prunable = _prunable(session, context.started_at - retention, bus, names)
        context.total(_count(session, prunable))
        deleted = 0
        while seqs := [*session.scalars(_batch(prunable))]:
            session.execute(delete(OutboxEvent).where(OutboxEvent.seq.in_(seqs)))
            deleted += len(seqs)
            context.advance(len(seqs))
        return deleted

    return handle


def _prunable(
    session: Session, cutoff: datetime, bus: str, consumers: list[str]
) -> list[ColumnElement[bool]]:
    conditions = [OutboxEvent.occurred_at < cutoff]
    if bus == "redis":
        return [*conditions, OutboxEvent.relayed_at.is_not(None)]
    if consumers:
        conditions.append(OutboxEvent.seq <= _slowest_position(session, consumers))
    return conditions


def _slowest_position(session: Session, consumers: list[str]) -> int:
    """The lowest position among ``consumers``; 0 if any of them has never polled."""
    positions = dict(
        session.execute(
            select(ConsumerOffset.consumer, ConsumerOffset.position).where(
                ConsumerOffset.consumer.in_(consumers)
            )
        ).all()
    )
    return min(positions.get(name, 0) for name in consumers)


def _count(session: Session, conditions: list[ColumnElement[bool]]) -> int:
    return int(
        session.scalar(select(func.count()).select_from(OutboxEvent).where(*conditions)) or 0
    )


def _batch(conditions: list[ColumnElement[bool]]) -> Select[int]:
    return select(OutboxEvent.seq).where(*conditions).order_by(OutboxEvent.seq).limit(BATCH)
