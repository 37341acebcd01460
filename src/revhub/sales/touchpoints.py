"""Campaigns and touchpoints: the engagement that scoring and attribution are built on.

Touchpoints name their person by id, e-mail (blind index) or anonymous visitor id; an
anonymous id seen for the first time starts an anonymous profile, which a later form fill
merges into the person. ``external_id`` makes a touchpoint idempotent: sending the same one
twice stores it once. After a batch is stored, each person's score is recomputed once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Contact
from revhub.contacts.pii import Pii
from revhub.contacts.stages import Stage
from revhub.core.db import get_or_404, utcnow
from revhub.core.errors import Conflict, FieldError, InvalidInput
from revhub.core.events import outbox
from revhub.core.pagination import newest_first
from revhub.core.schemas import item_errors
from revhub.sales import qualification
from revhub.sales import schemas as s
from revhub.sales.models import Campaign, Touchpoint

TOPIC = "campaign-performance"


def campaign_by_key(session: Session, key: str | None, *, field: str) -> Campaign | None:
    """The campaign ``key`` names; a key that names none is a 422 on ``field``."""
    if key is None:
        return None
    found = session.scalar(select(Campaign).where(Campaign.key == key))
    if found is None:
        raise InvalidInput([FieldError(field, f"no campaign with key {key!r}; create it first")])
    return found


def create_campaign(session: Session, *, campaign_in: s.CampaignCreate) -> Campaign:
    if session.scalar(select(Campaign).where(Campaign.key == campaign_in.key)) is not None:
        raise Conflict(f"A campaign with key {campaign_in.key!r} exists; keys are unique.")
    campaign = Campaign(**campaign_in.model_dump())
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(session: Session, *, campaign_id: uuid.UUID) -> Campaign:
    return get_or_404(session, Campaign, campaign_id, label="campaign")


def update_campaign(
    session: Session, *, campaign_id: uuid.UUID, campaign_in: s.CampaignUpdate
) -> Campaign:
    campaign = get_campaign(session, campaign_id=campaign_id)
    for name, value in campaign_in.model_dump(exclude_unset=True).items():
        setattr(campaign, name, value)
    if campaign.starts_on and campaign.ends_on and campaign.ends_on < campaign.starts_on:
        raise InvalidInput([FieldError("body.ends_on", "is before starts_on")])
    session.flush()
    return campaign


def list_campaigns(session: Session, *, after: uuid.UUID | None, limit: int) -> Sequence[Campaign]:
    return session.scalars(newest_first(session, Campaign, after=after).limit(limit)).all()


def record(
    session: Session,
    *,
    contact: Contact,
    campaign: Campaign | None,
    channel: str,
    kind: str,
    occurred_at: datetime,
    meta: dict[str, Any] | None = None,
    external_id: str | None = None,
) -> Touchpoint:
    """Store one touchpoint (no rescoring: the caller does it once per batch)."""
    touchpoint = Touchpoint(
        id=uuid.uuid4(),
        contact_id=contact.id,
        campaign_id=campaign.id if campaign else None,
        channel=channel,
        kind=kind,
        occurred_at=occurred_at,
        meta=meta or {},
        external_id=external_id,
    )
    session.add(touchpoint)
    return touchpoint


@dataclass
class _Batch:
    """Look-ups shared by the items of one request."""

    campaigns: dict[str, Campaign]
    touched: dict[uuid.UUID, Contact]
    stored: list[Touchpoint] = field(default_factory=list)


def add_touchpoints(
    session: Session, pii: Pii, *, items: list[dict[str, Any]], now: datetime | None = None
) -> s.TouchpointBulkResult:
    """Store up to 1,000 touchpoints (each valid one; each bad one reported at its index),
    then rescore every person touched, once."""
    batch = _Batch(campaigns={}, touched={})
    results: list[s.TouchpointItem] = []
    for index, item in enumerate(items):
        prefix = f"body.touchpoints[{index}]"
        try:
            tp_in = s.TouchpointCreate.model_validate(item)
            touchpoint, existing = _add_one(session, pii, tp_in, prefix, batch)
        except ValidationError as exc:
            results.append(
                s.TouchpointItem(index=index, status=422, errors=item_errors(exc, prefix))
            )
            continue
        except InvalidInput as exc:
            errors = [{"field": e.field, "message": e.message, "type": e.type} for e in exc.errors]
            results.append(s.TouchpointItem(index=index, status=422, errors=errors))
            continue
        status = 200 if existing else 201
        results.append(
            s.TouchpointItem(
                index=index, status=status, id=touchpoint.id, contact_id=touchpoint.contact_id
            )
        )
    session.flush()
    announce(session, batch)
    rescore_touched(session, batch.touched.values(), now=now or utcnow())
    accepted = sum(r.status < 300 for r in results)
    return s.TouchpointBulkResult(
        accepted=accepted, rejected=len(results) - accepted, results=results
    )


def add_touchpoint(
    session: Session, pii: Pii, *, tp_in: s.TouchpointCreate, now: datetime | None = None
) -> tuple[Touchpoint, bool]:
    batch = _Batch(campaigns={}, touched={})
    touchpoint, existing = _add_one(session, pii, tp_in, "body", batch)
    session.flush()
    announce(session, batch)
    rescore_touched(session, batch.touched.values(), now=now or utcnow())
    return touchpoint, existing


def announce(session: Session, batch: _Batch) -> None:
    """One ``touchpoints.recorded`` event per account touched (not one per touchpoint: a
    1,000-item batch is one change to each account's engagement)."""
    by_tenant: dict[str, list[Touchpoint]] = {}
    for touchpoint in batch.stored:
        tenant = contacts.tenant_of(session, batch.touched[touchpoint.contact_id])
        by_tenant.setdefault(tenant, []).append(touchpoint)
    for tenant, stored in by_tenant.items():
        outbox.publish(
            session,
            topic=TOPIC,
            event_type="touchpoints.recorded",
            tenant_id=tenant,
            payload={
                "count": len(stored),
                "touchpoints": [
                    {
                        "id": str(t.id),
                        "contact_id": str(t.contact_id),
                        "kind": t.kind,
                        "channel": t.channel,
                        "campaign_id": str(t.campaign_id) if t.campaign_id else None,
                        "occurred_at": t.occurred_at.isoformat(),
                    }
                    for t in stored
                ],
            },
        )


def rescore_touched(session: Session, people: Any, *, now: datetime) -> None:
    people = [c for c in people if c.stage != Stage.ANONYMOUS]
    if people:
        qualification.rescore(session, people=people, trigger="touchpoints", now=now)


def _add_one(
    session: Session, pii: Pii, tp_in: s.TouchpointCreate, prefix: str, batch: _Batch
) -> tuple[Touchpoint, bool]:
    if tp_in.external_id is not None:
        found = session.scalar(
            select(Touchpoint).where(Touchpoint.external_id == tp_in.external_id)
        )
        if found is not None:
            return found, True
    campaign = None
    if tp_in.campaign is not None:
        campaign = batch.campaigns.get(tp_in.campaign) or campaign_by_key(
            session, tp_in.campaign, field=f"{prefix}.campaign"
        )
        if campaign is not None:
            batch.campaigns[tp_in.campaign] = campaign
    contact = _person(session, pii, tp_in, prefix)  # last: every check above writes nothing
    meta: dict[str, Any] = dict(tp_in.meta)
    if tp_in.content_id:
        meta["content_id"] = tp_in.content_id
    touchpoint = record(
        session,
        contact=contact,
        campaign=campaign,
        channel=tp_in.channel.value,
        kind=tp_in.kind.value,
        occurred_at=tp_in.occurred_at,
        meta=meta,
        external_id=tp_in.external_id,
    )
    batch.touched[contact.id] = contact
    batch.stored.append(touchpoint)
    return touchpoint, False


def _person(session: Session, pii: Pii, tp_in: s.TouchpointCreate, prefix: str) -> Contact:
    if tp_in.contact_id is not None:
        found = session.get(Contact, tp_in.contact_id)
        if found is None:
            raise InvalidInput([FieldError(f"{prefix}.contact_id", "no contact with this id")])
        return contacts.get(session, contact_id=found.id)
    if tp_in.email is not None:
        by_email = contacts.get_by_email(session, pii, email=tp_in.email)
        if by_email is None:
            raise InvalidInput(
                [
                    FieldError(
                        f"{prefix}.email",
                        "no contact with this e-mail; capture the lead first or send anonymous_id",
                    )
                ]
            )
        return by_email
    assert tp_in.anonymous_id is not None
    key = tp_in.anonymous_id.strip()
    visitor = contacts.get_by_identity(session, kind="anonymous", key=key)
    if visitor is None:
        visitor = contacts.create(
            session,
            pii,
            profile=contacts.Profile(),
            stage=Stage.ANONYMOUS,
            account_id=None,
            source="touchpoint",
            at=tp_in.occurred_at,
        )
        contacts.link_identity(session, pii, contact=visitor, kind="anonymous", value=key)
    return visitor
