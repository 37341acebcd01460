"""Idempotent consumers, retries and dead letters, on the configured bus."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.core.db import Database
from revhub.core.events.bus import Bus, LocalBus, RedisBus
from revhub.core.events.consumers import Consumer, apply
from revhub.core.events.envelope import Event
from revhub.core.events.models import ConsumerOffset, DeadLetter, OutboxEvent
from revhub.core.events.outbox import publish
from revhub.core.retry import RetryableError, RetryPolicy
from tests.eventing import FAST, applied, deliver_all, duplicates, publish_leads, record_effect


def test_an_event_delivered_twice_takes_effect_once(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    events = publish_leads(db, 3)
    deliver_all(bus, effect_consumer)
    for event in events:
        assert apply(db, effect_consumer, event, policy=FAST, topic="lead-capture") == "duplicate"
    _rewind(db, bus, effect_consumer)
    deliver_all(bus, effect_consumer)
    with db.transaction() as session:
        assert len(applied(session)) == 3
        assert duplicates(session) == 0


def _rewind(db: Database, bus: Bus, consumer: Consumer) -> None:
    """Make the bus deliver everything again, as after a crash before the offset/ack."""
    if isinstance(bus, LocalBus):
        with db.transaction() as session:
            session.get(ConsumerOffset, consumer.name).position = 0  # type: ignore[union-attr]
    elif isinstance(bus, RedisBus):
        for topic in consumer.topics:
            bus.redis.xgroup_setid(bus.stream_key(topic), consumer.name, id="0")


def test_a_failing_handler_is_retried_then_succeeds(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    calls: list[int] = []
    inner = record_effect("flaky")

    def flaky(session: Session, event: Event, topic: str) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RetryableError("remote said 503")
        inner(session, event, topic)

    consumer = Consumer("flaky", frozenset({"lead-capture"}), handle=flaky)
    publish_leads(db, 1)
    deliver_all(bus, consumer)
    with db.transaction() as session:
        assert len(applied(session, "flaky")) == 1
        assert session.scalars(select(DeadLetter)).first() is None
    assert len(calls) == 3


def test_after_the_last_attempt_the_event_is_dead_lettered_with_its_error(
    db: Database, bus: Bus
) -> None:
    def broken(session: Session, event: Event, topic: str) -> None:
        raise RetryableError("CRM down")

    consumer = Consumer("broken", frozenset({"lead-capture"}), handle=broken)
    (event,) = publish_leads(db, 1)
    deliver_all(
        bus,
        consumer,
        RetryPolicy(max_attempts=4, base_delay_ms=0, retryable_errors=["RetryableError"]),
    )
    with db.transaction() as session:
        (letter,) = session.scalars(select(DeadLetter).where(DeadLetter.consumer == "broken"))
        assert letter.event_id == event.event_id and letter.attempts == 4
        assert "CRM down" in letter.error and letter.status == "open"
        assert letter.event["tenant_id"] == event.tenant_id


def test_an_error_that_is_not_retryable_is_dead_lettered_at_once(db: Database, bus: Bus) -> None:
    calls: list[int] = []

    def bad_data(session: Session, event: Event, topic: str) -> None:
        calls.append(1)
        raise ValueError("payload has no email")

    consumer = Consumer("strict", frozenset({"lead-capture"}), handle=bad_data)
    publish_leads(db, 1)
    deliver_all(
        bus,
        consumer,
        RetryPolicy(max_attempts=5, base_delay_ms=0, retryable_errors=["RetryableError"]),
    )
    assert calls == [1, 1], "once in the batch, once on its own: never retried"
    with db.transaction() as session:
        assert session.scalars(select(DeadLetter.attempts)).all() == [1]


def test_a_consumer_publishing_keeps_the_correlation_id(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    def forward(session: Session, event: Event, topic: str) -> None:
        publish(
            session,
            topic="customer-health",
            event_type="health.changed",
            tenant_id=event.tenant_id,
            payload={},
        )

    relay = Consumer("forwarder", frozenset({"lead-capture"}), handle=forward)
    with db.transaction() as session:
        publish(
            session,
            topic="lead-capture",
            event_type="lead.captured",
            tenant_id="t",
            payload={},
            correlation_id="corr-9",
        )
    deliver_all(bus, relay)
    deliver_all(bus, effect_consumer)
    with db.transaction() as session:
        from tests.eventing import effects

        rows = session.execute(select(effects.c.correlation_id)).scalars().all()
    assert rows == ["corr-9", "corr-9"]


def test_a_handlers_own_integrity_error_is_retried_not_taken_for_a_duplicate(
    db: Database, bus: Bus
) -> None:
    def clashes(session: Session, event: Event, topic: str) -> None:
        from revhub.core.events.models import ConsumerOffset

        session.add(ConsumerOffset(consumer="same-name", position=1))
        session.add(ConsumerOffset(consumer="same-name", position=2))
        session.flush()

    consumer = Consumer("clasher", frozenset({"lead-capture"}), handle=clashes)
    (event,) = publish_leads(db, 1)
    deliver_all(bus, consumer, RetryPolicy(max_attempts=2, base_delay_ms=0, retryable_errors=["*"]))
    with db.transaction() as session:
        (letter,) = session.scalars(select(DeadLetter).where(DeadLetter.consumer == "clasher"))
        assert letter.event_id == event.event_id and "IntegrityError" in letter.error


@pytest.mark.usefixtures("_effects_table")
def test_the_local_bus_reads_the_payloads_of_the_events_a_consumer_handles_only(
    db: Database,
) -> None:
    """Every consumer reads every event of its topics; a payload it would not handle (a
    touchpoint batch's run to a thousand touches) is never read."""
    picky = Consumer(
        "picky",
        frozenset({"lead-capture"}),
        handle=record_effect("picky"),
        event_types=frozenset({"lead.mql_reached"}),
    )
    with db.transaction() as session:
        for event_type in ("lead.processed", "lead.mql_reached", "lead.processed"):
            publish(session, topic="lead-capture", event_type=event_type, tenant_id="t", payload={})
    with db.transaction() as session:
        mql = session.scalar(
            select(OutboxEvent.seq).where(OutboxEvent.event_type == "lead.mql_reached")
        )
    reads: list[Any] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "payload" in statement:
            reads.append(parameters)

    sa_event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert deliver_all(LocalBus(db), picky) == 3
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", seen)
    assert len(reads) == 1
    read = reads[0]
    assert list(read.values() if isinstance(read, dict) else read) == [mql]
    with db.transaction() as session:
        assert len(applied(session, "picky")) == 1
