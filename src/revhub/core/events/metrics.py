"""Backbone gauges, refreshed when Prometheus scrapes: outbox lag and consumer lag.

Counters (deliveries, retries, dead letters) are kept as things happen, in
``consumers.py``; lag is a state, read from the database and the bus at scrape time.
"""

from __future__ import annotations

from prometheus_client import Gauge
from sqlalchemy.orm import Session

from revhub.core.db import utcnow
from revhub.core.events import outbox
from revhub.core.events.bus import Bus, RedisBus
from revhub.core.events.consumers import ConsumerRegistry
from revhub.core.observability import REGISTRY

OUTBOX_LAG = Gauge(
    "revhub_outbox_lag_seconds",
    "Age of the oldest event not yet relayed to Redis (0 when none, and on the local bus).",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "revhub_consumer_lag_events",
    "Events a consumer group has not handled yet.",
    ["consumer"],
    registry=REGISTRY,
)


def refresh(session: Session, bus: Bus, consumers: ConsumerRegistry) -> None:
    """Read the lags in the caller's transaction (the scrape request's)."""
    oldest = outbox.oldest_unrelayed_at(session) if isinstance(bus, RedisBus) else None
    OUTBOX_LAG.set((utcnow() - oldest).total_seconds() if oldest else 0.0)
    for consumer in consumers.active():
        CONSUMER_LAG.labels(consumer.name).set(bus.lag(session, consumer))
