"""The sales domain's consumer and batch job.

* ``alert-system`` consumer: ``lead.mql_reached`` becomes a sales notification for the
  lead's owner (seed 004: "MQL Alert → SDR Assignment (5 minutes)"), stored for the
  notifications API and published as ``sales.notification`` on ``platform`` so a webhook
  can carry it to Slack or e-mail.
* ``lead_score_decay`` job (daily 01:00 UTC): behavioural points halve every half-life
  whether or not anything happens, so stored scores are recomputed daily.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Contact
from revhub.contacts.stages import Stage
from revhub.core.events import outbox
from revhub.core.events.consumers import Consumer
from revhub.core.events.envelope import TOPICS, Event
from revhub.core.jobs.registry import Job, JobContext, JobRegistry
from revhub.sales import qualification
from revhub.sales.models import Lead, LeadScore, SalesNotification, SalesRep

ALERTS = "alert-system"
DECAY_JOB = "lead_score_decay"
DECAY_BATCH = 500


def notify_sales(session: Session, event: Event) -> SalesNotification | None:
    """Turn an MQL event into a notification for the owner (or the queue)."""
    if event.event_type != "lead.mql_reached":
        return None
    if session.scalar(
        select(SalesNotification).where(SalesNotification.event_id == event.event_id)
    ):
        return None
    contact = contacts.get(session, contact_id=uuid.UUID(str(event.payload["contact_id"])))
    lead = session.scalar(select(Lead).where(Lead.contact_id == contact.id))
    rep = session.get(SalesRep, lead.owner_rep_id) if lead and lead.owner_rep_id else None
    who = f"{rep.name}" if rep else "the fallback queue"
    message = (
        f"New MQL at {contact.company or 'an unknown company'} "
        f"(score {event.payload.get('score')}): for {who} — follow up within 5 minutes."
    )
    notification = SalesNotification(
        event_id=event.event_id,
        kind="mql",
        contact_id=contact.id,
        rep_id=rep.id if rep else None,
        message=message,
    )
    session.add(notification)
    session.flush()
    outbox.publish(
        session,
        topic="platform",
        event_type="sales.notification",
        tenant_id=event.tenant_id,
        payload={
            "notification_id": str(notification.id),
            "kind": "mql",
            "contact_id": str(contact.id),
            "rep_id": str(rep.id) if rep else None,
            "rep_email": rep.email if rep else None,
            "message": message,
        },
    )
    return notification


def alerts_consumer() -> Consumer:
    def handle(session: Session, event: Event, topic: str) -> None:
        notify_sales(session, event)

    return Consumer(ALERTS, frozenset(TOPICS), handle=handle, description="Automated alerting")


def decay_scores(session: Session, context: JobContext) -> int:
    """Rescore every lead and MQL at the run's start time, in batches."""
    query = (
        select(Contact)
        .join(LeadScore, LeadScore.contact_id == Contact.id)
        .where(Contact.stage.in_([Stage.LEAD, Stage.MQL]), Contact.merged_into_id.is_(None))
        .order_by(Contact.id)
    )
    people = session.scalars(query).all()
    context.total(len(people))
    model = qualification.active_model(session)
    for start in range(0, len(people), DECAY_BATCH):
        chunk = people[start : start + DECAY_BATCH]
        qualification.rescore(
            session, people=chunk, trigger="decay", now=context.started_at, model=model
        )
        context.advance(len(chunk))
    return len(people)


def register_jobs(registry: JobRegistry) -> None:
    registry.register(
        Job(
            DECAY_JOB,
            "0 1 * * *",
            handle=decay_scores,
            description="Recompute lead scores as behavioural points decay.",
            domain="sales",
        )
    )
