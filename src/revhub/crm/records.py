"""Hub records in mapping terms: the values of each hub field for contacts and deals, the
CRM row a mapping makes of them, and one canonical form to compare values across systems.

Values cross three representations (the hub's Python values, the CRM's JSON, which for
HubSpot is all text, and the JSON the link keeps of the last synced state), so every
comparison goes through :func:`canon`: the hub form a CRM value parses to, made JSON-safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from revhub.attribution.models import DealAttribution
from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.contacts.pii import Pii
from revhub.crm.mappings import FieldMap, ObjectMap, Owner
from revhub.sales.models import (
    Campaign,
    Lead,
    LeadCapture,
    LeadScore,
    Opportunity,
    SalesRep,
    Touchpoint,
)

PUSHED_BY_HUB = (Owner.MARKETING, Owner.SHARED)
READ_FROM_CRM = (Owner.CRM, Owner.SHARED)


def canon(mapped: FieldMap, value: Any, *, from_crm: bool) -> Any:
    """``value`` (a CRM value when ``from_crm``, else a hub value) in the one form both
    sides compare in: parsed as the hub holds it, then JSON-safe (money as a normalised
    decimal string, whole numbers as ints, times in ISO 8601 UTC)."""
    try:
        hub = mapped.to_hub(value) if from_crm else mapped.to_hub(mapped.to_crm(value))
    except ValueError:
        return str(value)
    return _json_safe(hub)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value.strip()
    return value


def crm_row(object_map: ObjectMap, values: dict[str, Any]) -> dict[str, Any]:
    """The row the hub writes: every field the hub owns or shares, in CRM names and forms
    (a field the hub has no value for is left out, never blanked)."""
    row: dict[str, Any] = {}
    for name, mapped in object_map.fields.items():
        if mapped.owner in PUSHED_BY_HUB and values.get(name) is not None:
            row[mapped.crm] = mapped.to_crm(values[name])
    return row


def synced_state(object_map: ObjectMap, values: dict[str, Any]) -> dict[str, Any]:
    """The canonical values of every mapped field the hub has: what the link remembers as
    the common ancestor after a write."""
    return {
        name: canon(mapped, values[name], from_crm=False)
        for name, mapped in object_map.fields.items()
        if values.get(name) is not None
    }


def contact_values(
    session: Session, pii: Pii, contact_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The hub fields of each live contact with an e-mail (an anonymous visitor has
    nothing a CRM could key on), read in a few queries for the whole batch."""
    people = session.scalars(
        select(Contact).where(
            Contact.id.in_(contact_ids),
            Contact.merged_into_id.is_(None),
            Contact.email_sealed.is_not(None),
        )
    ).all()
    ids = [c.id for c in people]
    leads = {
        lead.contact_id: lead
        for lead in session.scalars(select(Lead).where(Lead.contact_id.in_(ids)))
    }
    scores = dict(
        session.execute(
            select(LeadScore.contact_id, LeadScore.total).where(LeadScore.contact_id.in_(ids))
        ).all()
    )
    reps = _rep_emails(session, [lead.owner_rep_id for lead in leads.values()])
    captures = _capture_dates(session, [lead.id for lead in leads.values()])
    campaigns = _last_campaigns(session, ids)
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for contact in people:
        person = contacts.read_person(pii, contact)
        lead = leads.get(contact.id)
        first, recent = captures.get(lead.id, (None, None)) if lead else (None, None)
        found[contact.id] = {
            "lead_id": str(lead.id) if lead else None,
            "email": person.email,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "phone": person.phone,
            "company": contact.company,
            "job_title": contact.job_title,
            "country": contact.country,
            "lead_score": scores.get(contact.id),
            "lead_source": contact.lead_source,
            "campaign_id": campaigns.get(contact.id),
            "last_campaign_interaction": campaigns.get(contact.id),
            "stage": contact.stage,
            "owner_email": reps.get(lead.owner_rep_id) if lead and lead.owner_rep_id else None,
            "first_conversion_date": first,
            "recent_conversion_date": recent,
        }
    return found


def deal_values(session: Session, opportunity: Opportunity) -> dict[str, Any]:
    """The hub fields of a deal; ``primary_campaign_id`` is the key of the campaign with the
    largest share of its write-back credit (seed 002 ``syncAttributionToCRM``)."""
    account = session.get(Account, opportunity.account_id)
    primary = session.scalar(
        select(Campaign.key)
        .join(DealAttribution, DealAttribution.primary_campaign_id == Campaign.id)
        .where(DealAttribution.opportunity_id == opportunity.id)
    )
    return {
        "deal_id": str(opportunity.id),
        "name": opportunity.name,
        "amount": opportunity.amount,
        "currency": opportunity.currency,
        "stage": opportunity.stage,
        "is_closed": opportunity.is_closed,
        "is_closed_won": opportunity.is_closed_won,
        "opened_at": opportunity.opened_at,
        "closed_at": opportunity.closed_at,
        "account_domain": account.domain if account else None,
        "owner_email": None,
        "primary_campaign_id": primary,
    }


def _rep_emails(session: Session, rep_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = {r for r in rep_ids if r is not None}
    if not wanted:
        return {}
    return dict(
        session.execute(select(SalesRep.id, SalesRep.email).where(SalesRep.id.in_(wanted))).all()
    )


def _capture_dates(
    session: Session, lead_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[datetime, datetime]]:
    """First and most recent conversion (capture) of each lead."""
    rows = session.execute(
        select(
            LeadCapture.lead_id,
            func.min(LeadCapture.captured_at),
            func.max(LeadCapture.captured_at),
        )
        .where(LeadCapture.lead_id.in_(lead_ids))
        .group_by(LeadCapture.lead_id)
    ).all()
    return {lead_id: (first, recent) for lead_id, first, recent in rows}


def _last_campaigns(session: Session, contact_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The key of the campaign each contact last interacted with."""
    latest = (
        select(Touchpoint.contact_id, func.max(Touchpoint.occurred_at).label("at"))
        .where(Touchpoint.contact_id.in_(contact_ids), Touchpoint.campaign_id.is_not(None))
        .group_by(Touchpoint.contact_id)
        .subquery()
    )
    rows = session.execute(
        select(Touchpoint.contact_id, Campaign.key)
        .join(
            latest,
            (latest.c.contact_id == Touchpoint.contact_id)
            & (latest.c.at == Touchpoint.occurred_at),
        )
        .join(Campaign, Campaign.id == Touchpoint.campaign_id)
    ).all()
    return dict(rows)
