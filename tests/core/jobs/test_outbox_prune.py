"""``outbox_prune`` deletes only what is past the retention and no consumer still needs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from revhub.core.events.models import ConsumerOffset, OutboxEvent
from revhub.core.events.outbox import publish
from revhub.core.jobs import outbox_prune as outbox_prune_module
from revhub.core.jobs.outbox_prune import outbox_prune
from revhub.core.jobs.registry import JobContext

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
WEEK = timedelta(days=7)


def _events(session: Session, *ages_in_days: int) -> list[int]:
    """Publish one event per age, oldest first; their seqs."""
    seqs = []
    for age in ages_in_days:
        event = publish(
            session,
            topic="lead-capture",
            event_type="lead.captured",
            tenant_id="acme",
            payload={"age": age},
            occurred_at=NOW - timedelta(days=age),
        )
        seqs.append(
            session.scalars(
                select(OutboxEvent.seq).where(OutboxEvent.event_id == event.event_id)
            ).one()
        )
    return seqs


def _at(session: Session, consumer: str, position: int) -> None:
    session.merge(ConsumerOffset(consumer=consumer, position=position))
    session.flush()


def _prune(
    session: Session, *, bus: str = "local", consumers: tuple[str, ...] = ()
) -> tuple[int, JobContext]:
    context = JobContext(job="outbox_prune", run_id=uuid.uuid4(), started_at=NOW)
    handler = outbox_prune(retention=WEEK, bus=bus, consumers=consumers)
    return handler(session, context), context


def _left(session: Session, seqs: list[int]) -> list[int]:
    return [
        *session.scalars(
            select(OutboxEvent.seq).where(OutboxEvent.seq.in_(seqs)).order_by(OutboxEvent.seq)
        )
    ]


def test_deletes_rows_past_retention_that_every_active_consumer_has_read(session: Session) -> None:
    seqs = _events(session, 30, 20, 10, 8, 3)  # the first four are past the 7-day retention
    _at(session, "crm-sync", seqs[3])  # has read all four old ones
    _at(session, "alert-system", seqs[1])  # has read only the first two
    deleted, context = _prune(session, consumers=("crm-sync", "alert-system"))
    assert deleted == 2 and _left(session, seqs) == seqs[2:]
    assert (context.expected, context.done) == (2, 2)


def test_keeps_recent_rows_even_when_everyone_has_read_them(session: Session) -> None:
    seqs = _events(session, 10, 6, 1)
    _at(session, "crm-sync", seqs[-1])
    deleted, _ = _prune(session, consumers=("crm-sync",))
    assert deleted == 1 and _left(session, seqs) == seqs[1:]


def test_a_consumer_that_never_polled_keeps_everything(session: Session) -> None:
    seqs = _events(session, 30, 20)
    _at(session, "crm-sync", seqs[-1])
    deleted, context = _prune(session, consumers=("crm-sync", "never-polled"))
    assert deleted == 0 and _left(session, seqs) == seqs
    assert context.expected == 0


def test_consumers_without_a_handler_are_not_waited_for(session: Session) -> None:
    seqs = _events(session, 30, 20)
    _at(session, "reporting-engine", 0)  # a placeholder: not among the active consumers
    deleted, _ = _prune(session, consumers=())
    assert deleted == 2 and _left(session, seqs) == []


def test_on_the_redis_bus_only_relayed_rows_go(session: Session) -> None:
    seqs = _events(session, 30, 20, 10)
    session.execute(
        update(OutboxEvent).where(OutboxEvent.seq.in_(seqs[:2])).values(relayed_at=NOW - WEEK)
    )
    deleted, _ = _prune(session, bus="redis", consumers=("crm-sync",))
    assert deleted == 2 and _left(session, seqs) == seqs[2:]


def test_deletes_in_batches_and_reports_each(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_prune_module, "BATCH", 2)
    seqs = _events(session, 9, 9, 9, 9, 9)
    progress: list[tuple[int, int | None]] = []
    context = JobContext(
        job="outbox_prune",
        run_id=uuid.uuid4(),
        started_at=NOW,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    deleted = outbox_prune(retention=WEEK, bus="local", consumers=())(session, context)
    assert deleted == 5 and _left(session, seqs) == []
    assert progress == [(0, 5), (2, 5), (4, 5), (5, 5)]
