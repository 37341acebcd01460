"""The sales domain's consumer and batch job.

* ``alert-system`` consumer: ``lead.mql_reached`` becomes a sales notification for the
  lead's owner (seed 004: "MQL Alert → SDR Assignment (5 minutes)"), and so does
  ``crm.conflict_detected`` (a critical field both sides changed: seed 000/003 "manual
  escalation"), stored for the notifications API and published as ``sales.notification``
  on ``platform`` so a webhook can carry it to Slack or e-mail.
* ``lead_score_decay`` job (daily 01:00 UTC): behavioural points halve every half-life
  whether or not anything happens, so stored scores are recomputed daily.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

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
from revhub.sales.models import Lead, LeadScore, Opportunity, SalesNotification, SalesRep

ALERTS = "alert-system"
ALERTING = frozenset({"lead.mql_reached", "crm.conflict_detected"})
"""The events ``notify_sales`` turns into notifications; the consumer skips the rest
without a transaction."""
DECAY_JOB = "lead_score_decay"
DECAY_BATCH = 500


def notify_sales(session: Session, event: Event) -> SalesNotification | None:
    """Turn an alert-worthy event into a notification for the lead's owner (or the queue):
    a new MQL, or a CRM conflict on a critical field waiting for a person. Once per event."""
    about = _about(session, event)
    if about is None:
        return None
    if session.scalar(
        select(SalesNotification).where(SalesNotification.event_id == event.event_id)
    ):
        return None
    kind, contact_id, say = about
    contact = contacts.get(session, contact_id=contact_id)
    lead = session.scalar(select(Lead).where(Lead.contact_id == contact.id))
    rep = session.get(SalesRep, lead.owner_rep_id) if lead and lead.owner_rep_id else None
    message = say(contact, f"{rep.name}" if rep else "the fallback queue")
    notification = SalesNotification(
        event_id=event.event_id,
        kind=kind,
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
            "kind": kind,
            "contact_id": str(contact.id),
            "rep_id": str(rep.id) if rep else None,
            "rep_email": rep.email if rep else None,
            "message": message,
        },
    )
    return notification


Say = Callable[[Contact, str], str]


def _about(session: Session, event: Event) -> tuple[str, uuid.UUID, Say] | None:
    """The notification an event calls for: its kind, the contact and its message."""
    payload = event.payload
    if event.event_type == "lead.mql_reached":
        return (
            "mql",
            uuid.UUID(str(payload["contact_id"])),
            lambda contact, who: (
                f"New MQL at {contact.company or 'an unknown company'} "
                f"(score {payload.get('score')}): for {who} — follow up within 5 minutes."
            ),
        )
    if event.event_type == "crm.conflict_detected":
        contact_id = _conflict_contact(session, payload)
        if contact_id is None:
            return None
        return (
            "crm_conflict",
            contact_id,
            lambda contact, who: (
                f"{payload.get('connection')} and the hub disagree on the {payload.get('kind')} "
                f"field {payload.get('field')} of {contact.company or 'a contact'}"
                f"{_both_values(payload)}: for {who} — choose a side at POST "
                f"/api/v1/crm/conflicts/{payload.get('conflict_id')}/resolve."
            ),
        )
    return None


def _both_values(payload: dict[str, Any]) -> str:
    """The two values, unless the event withholds them (a person's e-mail or name: the
    conflict itself shows them to whoever may read it)."""
    if payload.get("values_withheld"):
        return " (personal data: see the conflict)"
    return f" (hub {payload.get('hub_value')!r}, CRM {payload.get('crm_value')!r})"


def _conflict_contact(session: Session, payload: dict[str, Any]) -> uuid.UUID | None:
    """The contact a conflict concerns: itself, or a deal's primary contact."""
    hub_id = uuid.UUID(str(payload["hub_id"]))
    if payload.get("kind") == "contact":
        return hub_id
    deal = session.get(Opportunity, hub_id)
    return deal.primary_contact_id if deal else None


def alerts_consumer() -> Consumer:
    def handle(session: Session, event: Event, topic: str) -> None:
        notify_sales(session, event)

    return Consumer(
        ALERTS,
        frozenset(TOPICS),
        handle=handle,
        event_types=ALERTING,
        description="Automated alerting",
    )


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
