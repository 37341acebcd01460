"""Webhook subscriptions and their deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, new_id, utcnow


class WebhookSubscription(Base):
    """Where to POST which events. The signing secret is stored sealed (AES-GCM)."""

    __tablename__ = "webhook_subscription"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)  # input ≤ 2,000; normalising may lengthen it
    topics: Mapped[list[str]] = mapped_column(JSON)
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    sealed_secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def wants(self, topic: str, event_type: str) -> bool:
        return wants_event(self.topics, self.event_types or (), topic, event_type)


def wants_event(
    topics: Collection[str], event_types: Collection[str], topic: str, event_type: str
) -> bool:
    """A subscription wants an event of its topics, and of its event types when it names any."""
    return topic in topics and (not event_types or event_type in event_types)


class WebhookDelivery(Base):
    """One event to one subscription, through every attempt until it lands or dies."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscription.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(64))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
