"""A REVHUB_PLUGINS module for the worker-process tests: a consumer whose effect is a row.

Each application inserts (event id, worker pid); a duplicate application would show as two
rows for one event id.
"""

from __future__ import annotations

import os
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.orm import Session

from revhub.core.events.consumers import Consumer, ConsumerRegistry
from revhub.core.events.envelope import Event

metadata = MetaData()
effects = Table(
    "e2e_effect",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("pid", Integer, nullable=False),
)


def handle(session: Session, event: Event, topic: str) -> None:
    time.sleep(float(os.environ.get("E2E_EFFECT_SECONDS", "0.005")))
    session.execute(insert(effects).values(event_id=str(event.event_id), pid=os.getpid()))


def register(registry: ConsumerRegistry) -> None:
    registry.register(Consumer("e2e-effects", frozenset({"lead-capture"}), handle=handle))
