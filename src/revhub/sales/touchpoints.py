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
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account
from revhub.contacts.pii import Pii
from revhub.contacts.stages import Stage
from revhub.core import reference
from revhub.core.db import add_row_later, batched_writes, get_or_404, new_id, utcnow
from revhub.core.errors import Conflict, FieldError, InvalidInput
from revhub.core.events import outbox
from revhub.core.pagination import newest_first
from revhub.core.schemas import item_errors
from revhub.sales import qualification
from revhub.sales import schemas as s
from revhub.sales.models import Campaign, Touchpoint
from revhub.sales.qualification import Scorable

TOPIC = "campaign-performance"


@dataclass(frozen=True)
class CampaignRef:
    """A campaign as captures and touchpoints name it."""

    id: uuid.UUID
    key: str
    channel: str


def campaign_by_key(session: Session, key: str | None, *, field: str) -> CampaignRef | None:
    """The campaign ``key`` names; a key that names none is a 422 on ``field``."""
    if key is None:
        return None
    found = campaigns_by_key(session, {key}).get(key)
    if found is None:
        raise InvalidInput([FieldError(field, f"no campaign with key {key!r}; create it first")])
    return found


def campaigns_by_key(session: Session, keys: set[str]) -> dict[str, CampaignRef]:
    """The campaigns among ``keys`` (a key that names none is left out). Every capture and
    touchpoint batch asks: this process keeps the campaigns it has read until one changes
    (``revhub.core.reference``), and reads the keys it has not seen in one query."""
    if not keys:
        return {}
    known: dict[str, CampaignRef] = reference.kept(session, CAMPAIGNS, lambda _session: {})
    unseen = keys - known.keys()
    if unseen:
        for c in session.execute(_CAMPAIGNS, {"keys": [*unseen]}):
            known[c.key] = CampaignRef(c.id, c.key, c.channel)
    return {key: known[key] for key in keys if key in known}


CAMPAIGNS = "campaigns"
reference.watch(CAMPAIGNS, Campaign)
_CAMPAIGNS = select(Campaign.id, Campaign.key, Campaign.channel).where(
    Campaign.key.in_(bindparam("keys", expanding=True))
)
"""Built once."""


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
    contact: Scorable,
    campaign: CampaignRef | None,
    channel: str,
    kind: str,
    occurred_at: datetime,
    meta: dict[str, Any] | None = None,
    external_id: str | None = None,
) -> s.Touchpoint:
    """Store one touchpoint (no rescoring: the caller does it once per batch). It is held as
    a plain row, written with the batch's other rows (``add_row_later``); the answer is the
    API's view of it, built from the same values."""
    answer = s.Touchpoint.model_construct(
        id=new_id(),
        contact_id=contact.id,
        campaign_id=campaign.id if campaign else None,
        channel=channel,
        kind=kind,
        occurred_at=occurred_at,
        external_id=external_id,
    )
    row = dict(answer) | {"meta": meta or {}, "created_at": utcnow()}
    add_row_later(session, Touchpoint, row)
    return answer


@dataclass
class _Batch:
    """Look-ups shared by the items of one request, loaded up front in a few queries (and
    held here: the session's identity map is weak)."""

    campaigns: dict[str, CampaignRef] = field(default_factory=dict)
    by_email: dict[str, Scorable] = field(default_factory=dict)
    email_keys: dict[str, str] = field(default_factory=dict)
    """Each e-mail named, to its blind index (an HMAC: worked out once per spelling)."""
    by_visitor: dict[str, Scorable] = field(default_factory=dict)
    by_id: dict[uuid.UUID, Scorable] = field(default_factory=dict)
    known: dict[str, s.Touchpoint] = field(default_factory=dict)
    tenants: dict[uuid.UUID, str] = field(default_factory=dict)
    """The domain (tenant) of each account the batch's people work at."""
    touched: dict[uuid.UUID, Scorable] = field(default_factory=dict)
    stored: list[s.Touchpoint] = field(default_factory=list)


def _prefetch(session: Session, pii: Pii, wanted: list[s.TouchpointCreate]) -> _Batch:
    batch = _Batch()
    batch.campaigns = campaigns_by_key(session, {t.campaign for t in wanted if t.campaign})
    externals = {t.external_id for t in wanted if t.external_id}
    if externals:
        found_tp = session.scalars(select(Touchpoint).where(Touchpoint.external_id.in_(externals)))
        batch.known = {
            t.external_id: s.Touchpoint.model_validate(t) for t in found_tp if t.external_id
        }
    batch.email_keys = {
        t.email: pii.email_index(t.email) for t in wanted if t.email and not t.contact_id
    }
    emails = set(batch.email_keys.values())
    visitors = {
        t.anonymous_id.strip() for t in wanted if t.anonymous_id and not (t.contact_id or t.email)
    }
    contacts.claim_identities(session, [("anonymous", v) for v in visitors])
    owners = contacts.identity_owners(session, "email", emails) | contacts.identity_owners(
        session, "anonymous", visitors
    )
    ids = {t.contact_id for t in wanted if t.contact_id} | set(owners.values())
    people: dict[uuid.UUID, Scorable] = dict(contacts.live_people(session, ids))
    batch.by_id = people
    batch.by_email = {
        k: people[o] for (kind, k), o in owners.items() if kind == "email" and o in people
    }
    batch.by_visitor = {
        k: people[o] for (kind, k), o in owners.items() if kind == "anonymous" and o in people
    }
    account_ids = {c.account_id for c in people.values() if c.account_id}
    if account_ids:
        table = Account.__table__.c
        found = session.execute(select(table.id, table.domain).where(table.id.in_(account_ids)))
        batch.tenants = {row.id: row.domain for row in found}
    return batch


def add_touchpoints(
    session: Session, pii: Pii, *, items: list[dict[str, Any]], now: datetime | None = None
) -> s.TouchpointBulkResult:
    """Store up to 1,000 touchpoints (each valid one; each bad one reported at its index),
    then rescore every person touched, once."""
    results: dict[int, s.TouchpointItem] = {}
    wanted: dict[int, s.TouchpointCreate] = {}
    for index, item in enumerate(items):
        try:
            wanted[index] = s.TouchpointCreate.model_validate(item)
        except ValidationError as exc:
            prefix = f"body.touchpoints[{index}]"
            results[index] = s.TouchpointItem(
                index=index, status=422, errors=item_errors(exc, prefix)
            )
    batch = _prefetch(session, pii, list(wanted.values()))
    with batched_writes(session):
        for index, tp_in in wanted.items():
            results[index] = _item(session, pii, index, tp_in, batch)
    _finish(session, batch, now)
    ordered = [results[i] for i in range(len(items))]
    accepted = sum(r.status < 300 for r in ordered)
    return s.TouchpointBulkResult(
        accepted=accepted, rejected=len(ordered) - accepted, results=ordered
    )


def _item(
    session: Session, pii: Pii, index: int, tp_in: s.TouchpointCreate, batch: _Batch
) -> s.TouchpointItem:
    try:
        touchpoint, existing = _add_one(session, pii, tp_in, f"body.touchpoints[{index}]", batch)
    except InvalidInput as exc:
        errors = [{"field": e.field, "message": e.message, "type": e.type} for e in exc.errors]
        return s.TouchpointItem(index=index, status=422, errors=errors)
    return s.TouchpointItem(
        index=index,
        status=200 if existing else 201,
        id=touchpoint.id,
        contact_id=touchpoint.contact_id,
    )


def add_touchpoint(
    session: Session, pii: Pii, *, tp_in: s.TouchpointCreate, now: datetime | None = None
) -> tuple[s.Touchpoint, bool]:
    batch = _prefetch(session, pii, [tp_in])
    touchpoint, existing = _add_one(session, pii, tp_in, "body", batch)
    _finish(session, batch, now)
    return touchpoint, existing


def _finish(session: Session, batch: _Batch, now: datetime | None) -> None:
    session.flush()
    with batched_writes(session), outbox.held_until_done(session):
        announce(session, batch)
        rescore_touched(session, batch.touched.values(), now=now or utcnow())


def announce(session: Session, batch: _Batch) -> None:
    """One ``touchpoints.recorded`` event per account touched (not one per touchpoint: a
    1,000-item batch is one change to each account's engagement)."""
    by_tenant: dict[str, list[s.Touchpoint]] = {}
    for touchpoint in batch.stored:
        account_id = batch.touched[touchpoint.contact_id].account_id
        tenant = (
            batch.tenants.get(account_id, contacts.NO_ACCOUNT)
            if account_id
            else contacts.NO_ACCOUNT
        )
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
) -> tuple[s.Touchpoint, bool]:
    if tp_in.external_id is not None and tp_in.external_id in batch.known:
        return batch.known[tp_in.external_id], True
    campaign = None
    if tp_in.campaign is not None:
        campaign = batch.campaigns.get(tp_in.campaign) or campaign_by_key(
            session, tp_in.campaign, field=f"{prefix}.campaign"
        )
    contact = _person(session, pii, tp_in, prefix, batch)  # last: every check above writes nothing
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
    if tp_in.external_id is not None:
        batch.known[tp_in.external_id] = touchpoint
    batch.touched[contact.id] = contact
    batch.stored.append(touchpoint)
    return touchpoint, False


def _person(
    session: Session, pii: Pii, tp_in: s.TouchpointCreate, prefix: str, batch: _Batch
) -> Scorable:
    """The person named (prefetched); an anonymous id seen for the first time starts an
    anonymous profile, which later items of the batch then find."""
    if tp_in.contact_id is not None:
        found = batch.by_id.get(tp_in.contact_id)
        if found is None:
            raise InvalidInput([FieldError(f"{prefix}.contact_id", "no contact with this id")])
        return found
    if tp_in.email is not None:
        by_email = batch.by_email.get(batch.email_keys[tp_in.email])
        if by_email is None:
            message = "no contact with this e-mail; capture the lead first or send anonymous_id"
            raise InvalidInput([FieldError(f"{prefix}.email", message)])
        return by_email
    assert tp_in.anonymous_id is not None
    key = tp_in.anonymous_id.strip()
    visitor = batch.by_visitor.get(key)
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
        contacts.add_identity(session, pii, contact=visitor, kind="anonymous", value=key)
        batch.by_visitor[key] = visitor
    return visitor
