"""The event envelope of seed 002 ("Real-Time Event Streaming") and the topics it travels on.

``tenant_id`` is the account key and the ordering key. ``metadata.correlation_id`` follows a
request through every event it causes: the API sets it from the request id, and a consumer
handling an event publishes its own events under the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Topic = Literal[
    "lead-capture",
    "campaign-performance",
    "customer-health",
    "revenue-attribution",
    "product",
    "finance",
    "crm",
    "platform",
]

TOPICS: dict[Topic, str] = {
    "lead-capture": "Real-time lead events",
    "campaign-performance": "Campaign metrics updates",
    "customer-health": "Health score changes",
    "revenue-attribution": "Revenue tracking events",
    "product": "Feature usage, adoption and launches",
    "finance": "Spend, budgets and ROI",
    "crm": "CRM sync outcomes and conflicts",
    "platform": "The hub's own events: alerts, job runs, dead letters",
}

SOURCE = "revhub"
VERSION = "1.0"

_correlation: ContextVar[str | None] = ContextVar("revhub_correlation_id", default=None)


class EventMetadata(BaseModel):
    source: str = SOURCE
    version: str = VERSION
    correlation_id: str | None = None


class Event(BaseModel):
    """One event, exactly as consumers, Redis and webhook receivers see it."""

    event_id: uuid.UUID
    event_type: str
    tenant_id: str
    timestamp: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: EventMetadata = Field(default_factory=EventMetadata)


def current_correlation_id() -> str | None:
    return _correlation.get()


@contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    """Events published inside this block carry ``correlation_id``."""
    token = _correlation.set(correlation_id)
    try:
        yield
    finally:
        _correlation.reset(token)
