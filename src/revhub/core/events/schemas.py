"""Responses of the event endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from revhub.core.schemas import ResponseModel


class DeadLetter(ResponseModel):
    id: uuid.UUID
    consumer: str
    event_id: uuid.UUID
    topic: str
    event: dict[str, Any]
    error: str
    attempts: int
    status: str
    created_at: datetime
    updated_at: datetime


class ConsumerStatus(ResponseModel):
    name: str
    topics: list[str]
    description: str
    status: str
    lag: int | None
