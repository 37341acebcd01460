"""Assemble the worker: the bus configuration picks, the consumers every domain registers.

Domains add their consumers here as they land (each from its own ``jobs.py``); modules named
in ``REVHUB_PLUGINS`` may register more through a ``register(registry)`` function, and jobs
through a ``register_jobs(job_registry)`` function (either is optional).
"""

from __future__ import annotations

import importlib

from revhub.attribution import jobs as attribution_jobs
from revhub.contacts.pii import pii_for
from revhub.core.crypto import SecretBox
from revhub.core.db import Database
from revhub.core.events.bus import make_bus
from revhub.core.events.consumers import ConsumerRegistry, default_registry
from revhub.core.events.envelope import TOPICS
from revhub.core.events.service import replay_requested
from revhub.core.events.worker import Worker
from revhub.core.jobs.defaults import build_registry
from revhub.core.jobs.registry import JobRegistry
from revhub.core.jobs.scheduler import TICK_SECONDS, Scheduler
from revhub.core.settings import Settings
from revhub.core.webhooks.jobs import SECRET_PURPOSE, delivery_chore, webhooks_consumer
from revhub.core.webhooks.service import CONSUMER as WEBHOOKS
from revhub.crm import jobs as crm_jobs
from revhub.crm.service import credentials_box, mappings_for
from revhub.sales import jobs as sales_jobs


def consumer_registry(settings: Settings) -> ConsumerRegistry:
    registry = default_registry()
    registry.register(webhooks_consumer())
    registry.register(sales_jobs.alerts_consumer())
    registry.register(attribution_jobs.analytics_consumer())
    registry.register(crm_jobs.crm_sync_consumer())
    for module_name in settings.plugins:
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):
            module.register(registry)
    return registry


def job_registry(settings: Settings, consumers: ConsumerRegistry) -> JobRegistry:
    return build_registry(
        settings,
        consumers=[c.name for c in consumers.active()],
        domains=(sales_jobs.register_jobs, attribution_jobs.register_jobs, crm_jobs.register_jobs),
    )


def build_worker(settings: Settings, db: Database) -> Worker:
    bus = make_bus(
        db,
        kind=settings.bus,
        redis_url=settings.redis_url,
        topics=TOPICS,
        visibility_timeout_ms=int(settings.visibility_timeout_seconds * 1000),
        prefix=settings.redis_prefix,
    )
    registry = consumer_registry(settings)
    worker = Worker(db=db, bus=bus, registry=registry, policy_for=settings.policy_for)
    box = SecretBox(settings.secrets["pii_key"], SECRET_PURPOSE)
    deliver = delivery_chore(db, box=box, policy=settings.policy_for(WEBHOOKS))
    worker.chores.append(("webhook-deliveries", 0.5, deliver))
    worker.chores.append(
        (
            "replay-dead-letters",
            1.0,
            lambda: replay_requested(db, registry=registry, policy_for=settings.policy_for),
        )
    )
    crm = crm_jobs.sync_chore(
        db, pii_for(settings), credentials_box(settings), mappings_for(settings)
    )
    worker.chores.append(("crm-sync", crm_jobs.CHORE_SECONDS, crm.tick))
    scheduler = Scheduler(db=db, registry=job_registry(settings, registry), worker=worker.name)
    worker.chores.append(("scheduler", TICK_SECONDS, scheduler.tick))
    return worker
