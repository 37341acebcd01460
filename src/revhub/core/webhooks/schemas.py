"""Webhook request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AnyHttpUrl, Field, UrlConstraints, field_validator

from revhub.core.events.envelope import TOPICS, Topic
from revhub.core.schemas import RequestModel, ResponseModel

URL_MAX = 2000


class SubscriptionCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=URL_MAX)] = Field(
        strict=False, description="Where events are POSTed (http or https)."
    )
    topics: list[Topic] = Field(min_length=1, max_length=len(TOPICS))
    event_types: list[str] | None = Field(
        default=None, description="Only these event types; omit for every type on the topics."
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="Signing secret; omit to have one generated (shown once).",
    )

    @field_validator("topics")
    @classmethod
    def _each_topic_once(cls, topics: list[Topic]) -> list[Topic]:
        return sorted(set(topics))


class Subscription(ResponseModel):
    id: uuid.UUID
    name: str
    url: str
    topics: list[str]
    event_types: list[str] | None
    active: bool
    created_by: str
    created_at: datetime


class SubscriptionCreated(Subscription):
    secret: str = Field(description="Shown once: verify the RevHub-Signature header with it.")


class Delivery(ResponseModel):
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    topic: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
