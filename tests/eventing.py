"""Event fixtures, a pytest plugin loaded by tests/conftest.py: the configured bus
(REVHUB_BUS=local|redis), a consumer with a visible effect (a row per application in
``test_effect``), fast retry policies."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.orm import Session

from revhub.core.db import Database
from revhub.core.events.bus import Bus, LocalBus, RedisBus
from revhub.core.events.consumers import Consumer
from revhub.core.events.envelope import TOPICS, Event
from revhub.core.events.outbox import publish
from revhub.core.retry import RetryPolicy

BUS = os.environ.get("REVHUB_BUS", "local")
REDIS_URL = os.environ.get("REVHUB_REDIS_URL")

effects_metadata = MetaData()
effects = Table(
    "test_effect",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64)),
    Column("event_id", String(64)),
    Column("tenant_id", String(200)),
    Column("correlation_id", String(200), nullable=True),
)

FAST = RetryPolicy(max_attempts=3, base_delay_ms=0, max_delay_ms=0, retryable_errors=["*"])


@pytest.fixture(scope="session")
def _effects_table(engine: Engine) -> None:
    effects_metadata.create_all(engine)


def record_effect(name: str) -> Callable[[Session, Event], None]:
    def handle(session: Session, event: Event, topic: str) -> None:
        session.execute(
            insert(effects).values(
                consumer=name,
                event_id=str(event.event_id),
                tenant_id=event.tenant_id,
                correlation_id=event.metadata.correlation_id,
            )
        )

    return handle


@pytest.fixture
def effect_consumer(_effects_table: None) -> Consumer:
    return Consumer(
        "test-effects",
        frozenset({"lead-capture", "customer-health"}),
        handle=record_effect("test-effects"),
    )


def applied(session: Session, consumer: str = "test-effects") -> list[tuple[str, str]]:
    rows = session.execute(
        select(effects.c.event_id, effects.c.tenant_id)
        .where(effects.c.consumer == consumer)
        .order_by(effects.c.id)
    )
    return [(r.event_id, r.tenant_id) for r in rows]


def duplicates(session: Session) -> int:
    total = session.scalar(select(func.count()).select_from(effects)) or 0
    distinct = (
        session.scalar(
            select(func.count(func.distinct(effects.c.consumer + ":" + effects.c.event_id)))
        )
        or 0
    )
    return int(total - distinct)


@pytest.fixture
def bus(db: Database) -> Iterator[Bus]:
    """The bus the configuration names; on Redis, streams of the test's own."""
    if BUS != "redis":
        yield LocalBus(db)
        return
    assert REDIS_URL, "REVHUB_BUS=redis needs REVHUB_REDIS_URL"
    prefix = f"revhub-test-{uuid.uuid4().hex[:8]}:"
    yield RedisBus(
        db, REDIS_URL, topics=TOPICS, block_ms=50, visibility_timeout_ms=60_000, prefix=prefix
    )
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def deliver_all(bus: Bus, consumer: Consumer, policy: RetryPolicy = FAST) -> int:
    """Relay (Redis) and poll until nothing is left; the number of events handled."""
    if isinstance(bus, RedisBus):
        bus.ensure_groups([consumer])
    handled = 0
    while True:
        bus.relay()
        n = bus.poll(consumer, policy=policy, worker_id="test-worker")
        handled += n
        if n == 0:
            return handled


def publish_leads(db: Database, n: int, *, tenants: int | None = None) -> list[Event]:
    """Commit ``n`` ``lead.captured`` events in one transaction (tenant ``t<i>``, or
    ``t<i % tenants>`` to give tenants several events each)."""
    with db.transaction() as session:
        return [
            publish(
                session,
                topic="lead-capture",
                event_type="lead.captured",
                tenant_id=f"t{i % tenants if tenants else i}",
                payload={"i": i},
            )
            for i in range(n)
        ]
