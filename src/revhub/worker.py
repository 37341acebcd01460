"""Assemble the worker: the bus configuration picks, the consumers every domain registers.

Domains add their consumers here as they land (each from its own ``jobs.py``); modules named
in ``REVHUB_PLUGINS`` may register more through a ``register(registry)`` function.
"""

from __future__ import annotations

import importlib

from revhub.core.db import Database
from revhub.core.events.bus import make_bus
from revhub.core.events.consumers import ConsumerRegistry, default_registry
from revhub.core.events.envelope import TOPICS
from revhub.core.events.worker import Worker
from revhub.core.settings import Settings


def consumer_registry(settings: Settings) -> ConsumerRegistry:
    registry = default_registry()
    for module_name in settings.plugins:
        module = importlib.import_module(module_name)
        module.register(registry)
    return registry


def build_worker(settings: Settings, db: Database) -> Worker:
    bus = make_bus(
        db,
        kind=settings.bus,
        redis_url=settings.redis_url,
        topics=TOPICS,
        visibility_timeout_ms=int(settings.visibility_timeout_seconds * 1000),
    )
    return Worker(
        db=db, bus=bus, registry=consumer_registry(settings), policy_for=settings.policy_for
    )
