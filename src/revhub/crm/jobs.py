"""The CRM domain's consumer, job and worker chore.

* ``crm-sync`` consumer (seed 002: "Real-time CRM synchronization"): every lead event that
  names a contact queues that contact for the real-time push to each active connection;
  ``attribution.updated`` queues its deal (seed 002 ``syncAttributionToCRM``: the primary
  campaign written onto the CRM deal).
* ``crm_contact_sync`` job (seed 002 ``BatchSyncSchedule``: daily 02:00 UTC): asks the
  worker for an incremental sync of every active connection.
* ``crm-sync`` chore: the worker runs requested syncs and pushes the queue (:mod:`sync`).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import Pii
from revhub.core.crypto import SecretBox
from revhub.core.db import Database
from revhub.core.events.consumers import Consumer
from revhub.core.events.envelope import Event
from revhub.core.jobs.defaults import DAILY_0200
from revhub.core.jobs.registry import Job, JobContext, JobRegistry
from revhub.crm.mappings import Mappings
from revhub.crm.models import CrmConnection
from revhub.crm.sync import SyncWorker, connections_want, queue_push, request_sync

CONSUMER = "crm-sync"
JOB = "crm_contact_sync"
TOPICS = frozenset({"lead-capture", "revenue-attribution"})
CHORE_SECONDS = 1.0


def queue_record_of(session: Session, event: Event) -> int:
    """Queue the deal of an ``attribution.updated`` or the contact an event names; events
    naming neither are not for the CRM."""
    if event.event_type == "attribution.updated":
        deal_id = event.payload.get("opportunity_id")
        return queue_push(session, hub_id=uuid.UUID(str(deal_id)), kind="deal") if deal_id else 0
    contact_id = event.payload.get("contact_id")
    if not contact_id:
        return 0
    return queue_push(session, hub_id=uuid.UUID(str(contact_id)))


def crm_sync_consumer() -> Consumer:
    def handle(session: Session, event: Event, topic: str) -> None:
        queue_record_of(session, event)

    return Consumer(
        CONSUMER,
        TOPICS,
        handle=handle,
        interest=connections_want,
        description="Real-time CRM synchronization",
    )


def request_scheduled_syncs(session: Session, context: JobContext) -> int:
    """Ask for an incremental sync of every active connection; returns how many."""
    connections = session.scalars(
        select(CrmConnection.id).where(CrmConnection.active.is_(True))
    ).all()
    context.total(len(connections))
    for connection_id in connections:
        request_sync(session, connection_id=connection_id, full=False, trigger="schedule")
        context.advance()
    return len(connections)


def register_jobs(registry: JobRegistry) -> None:
    registry.register(
        Job(
            JOB,
            DAILY_0200,
            handle=request_scheduled_syncs,
            description="Sync contacts and deals with every connected CRM.",
            domain="crm",
        )
    )


def sync_chore(db: Database, pii: Pii, box: SecretBox, mappings: Mappings) -> SyncWorker:
    return SyncWorker(db=db, pii=pii, box=box, mappings=mappings)
