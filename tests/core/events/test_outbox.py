"""Publishing through the outbox, on the configured bus."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from revhub.core.db import Database
from revhub.core.errors import InvalidInput
from revhub.core.events.bus import Bus
from revhub.core.events.consumers import Consumer
from revhub.core.events.envelope import correlated
from revhub.core.events.models import OutboxEvent
from revhub.core.events.outbox import NEWS, held_until_done, publish
from tests.eventing import applied, deliver_all


def test_the_envelope_is_exactly_the_seeds(session: Session) -> None:
    event = publish(
        session,
        topic="lead-capture",
        event_type="lead.captured",
        tenant_id="acme.com",
        payload={"email": "ada@acme.com"},
    )
    dumped = event.model_dump(mode="json")
    assert set(dumped) == {
        "event_id",
        "event_type",
        "tenant_id",
        "timestamp",
        "payload",
        "metadata",
    }
    assert set(dumped["metadata"]) == {"source", "version", "correlation_id"}
    assert dumped["metadata"]["source"] == "revhub" and dumped["metadata"]["version"] == "1.0"
    assert dumped["timestamp"].endswith("Z")


def test_unknown_topic_is_refused(session: Session) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        publish(session, topic="nope", event_type="x", tenant_id="t", payload={})
    assert excinfo.value.errors[0].field == "topic"


def test_events_of_a_rolled_back_transaction_are_never_delivered(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    def failing_use_case() -> None:
        with db.transaction() as session:
            publish(
                session,
                topic="lead-capture",
                event_type="lead.captured",
                tenant_id="ghost",
                payload={},
            )
            raise RuntimeError("the use case failed after publishing")

    with pytest.raises(RuntimeError):
        failing_use_case()
    with db.transaction() as session:
        kept = publish(
            session, topic="lead-capture", event_type="lead.captured", tenant_id="real", payload={}
        )
    assert deliver_all(bus, effect_consumer) == 1
    with db.transaction() as session:
        assert applied(session) == [(str(kept.event_id), "real")]


def test_events_held_for_a_batch_keep_publishing_order_and_vanish_with_it(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    def event(session: Session, n: int) -> tuple[str, str]:
        published = publish(
            session, topic="lead-capture", event_type="lead.scored", tenant_id="held", payload={}
        )
        return str(published.event_id), f"{n}"

    def stored(session: Session) -> int:
        return session.scalar(select(func.count()).select_from(OutboxEvent)) or 0

    with db.transaction() as session:
        order = [event(session, 0)]
        with held_until_done(session):
            before = stored(session)
            order += [event(session, n) for n in (1, 2, 3)]
            assert stored(session) == before
        assert stored(session) == before + 3
        order.append(event(session, 4))

        def failing_batch() -> None:
            with held_until_done(session):
                event(session, 5)
                raise RuntimeError("the batch failed after publishing")

        with pytest.raises(RuntimeError):
            failing_batch()
    assert deliver_all(bus, effect_consumer) == 5
    with db.transaction() as session:
        assert [event_id for event_id, _ in applied(session)] == [e for e, _ in order]


def test_each_tenant_sees_its_events_in_order(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    published = []
    for i in range(12):
        with db.transaction() as session:
            tenant = f"tenant-{i % 3}"
            published.append(
                (
                    str(
                        publish(
                            session,
                            topic="lead-capture",
                            event_type="lead.scored",
                            tenant_id=tenant,
                            payload={"n": i},
                        ).event_id
                    ),
                    tenant,
                )
            )
    deliver_all(bus, effect_consumer)
    with db.transaction() as session:
        seen = applied(session)
    for tenant in ("tenant-0", "tenant-1", "tenant-2"):
        assert [e for e in seen if e[1] == tenant] == [e for e in published if e[1] == tenant]


def test_topics_a_consumer_does_not_follow_are_not_delivered(
    db: Database, bus: Bus, effect_consumer: Consumer
) -> None:
    with db.transaction() as session:
        publish(session, topic="finance", event_type="spend.recorded", tenant_id="t", payload={})
    assert deliver_all(bus, effect_consumer) == 0


def test_the_correlation_id_follows_the_request(db: Database) -> None:
    with correlated("req-123"), db.transaction() as session:
        event = publish(session, topic="platform", event_type="x", tenant_id="t", payload={})
    assert event.metadata.correlation_id == "req-123"


def test_a_commit_that_published_wakes_the_consumers_waiting_for_news(db: Database) -> None:
    seen = NEWS.generation

    def rolled_back() -> None:
        with db.transaction() as session:
            publish(session, topic="lead-capture", event_type="x", tenant_id="t", payload={})
            raise RuntimeError("rolled back after publishing")

    with pytest.raises(RuntimeError):
        rolled_back()
    with db.transaction() as session:
        session.execute(select(1))  # a commit that published nothing
    assert NEWS.generation == seen
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(NEWS.wait_past(seen, 30.0)))
    waiter.start()
    with db.transaction() as session:
        publish(session, topic="lead-capture", event_type="x", tenant_id="t", payload={})
    waiter.join(30.0)
    assert woke == [True]
    assert NEWS.generation == seen + 1


def test_after_a_rolled_back_savepoint_the_publishers_lock_is_taken_again(
    session: Session,
) -> None:
    """A savepoint's rollback releases the lock taken inside it (PostgreSQL): an event
    published after it must queue for the lock again, or it could take a ``seq`` below one
    a publisher commits first, and a relay that has moved past it would never send it."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no publishers' lock")
    locks: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if "pg_advisory_xact_lock" in statement:
            locks.append(statement)

    event.listen(session.get_bind(), "before_cursor_execute", note)
    try:
        savepoint = session.begin_nested()
        publish(session, topic="lead-capture", event_type="a", tenant_id="t", payload={})
        savepoint.rollback()
        publish(session, topic="lead-capture", event_type="b", tenant_id="t", payload={})
        session.flush()
        publish(session, topic="lead-capture", event_type="c", tenant_id="t", payload={})
        session.flush()
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", note)
    assert len(locks) == 2  # again after the rollback, not again for "c"
