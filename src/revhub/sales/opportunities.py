"""Opportunities (deals) from the API now, from the CRMs later (same functions).

A deal moves its primary contact along the lifecycle: opening one makes them an
``opportunity``, winning it a ``customer`` (forward moves only; a contact already further
along stays where they are). Each change is published on ``revenue-attribution``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.contacts.stages import Stage, can_move
from revhub.core.db import get_or_404
from revhub.core.errors import Conflict, FieldError, InvalidInput
from revhub.core.events import outbox
from revhub.core.pagination import newest_first
from revhub.sales import schemas as s
from revhub.sales.models import Opportunity

TOPIC = "revenue-attribution"


def create(
    session: Session, *, opportunity_in: s.OpportunityCreate, source: str = "api"
) -> Opportunity:
    account = _account(session, opportunity_in)
    data = opportunity_in.model_dump(exclude={"account_id", "account_domain"})
    if opportunity_in.external_id is not None and session.scalar(
        select(Opportunity).where(
            Opportunity.source == source, Opportunity.external_id == opportunity_in.external_id
        )
    ):
        raise Conflict(
            f"An opportunity with external_id {opportunity_in.external_id!r} exists; "
            "update it instead."
        )
    if data["primary_contact_id"] is not None:
        data["primary_contact_id"] = _live_contact(session, data["primary_contact_id"])
    opportunity = Opportunity(account_id=account.id, source=source, **data)
    session.add(opportunity)
    session.flush()
    _move_contact(session, opportunity)
    _publish(session, opportunity, "opportunity.created", account.domain)
    return opportunity


def update(
    session: Session, *, opportunity_id: uuid.UUID, opportunity_in: s.OpportunityUpdate
) -> Opportunity:
    opportunity = get(session, opportunity_id=opportunity_id)
    was_won = opportunity.is_closed_won
    changes = opportunity_in.model_dump(exclude_unset=True)
    if changes.get("primary_contact_id") is not None:
        changes["primary_contact_id"] = _live_contact(session, changes["primary_contact_id"])
    for name, value in changes.items():
        if value is None and name in {
            "name",
            "amount",
            "currency",
            "stage",
            "is_closed",
            "is_closed_won",
        }:
            raise InvalidInput(
                [FieldError(f"body.{name}", "cannot be null; leave it out to keep it")]
            )
        setattr(opportunity, name, value)
    if opportunity.is_closed_won and not opportunity.is_closed:
        raise InvalidInput(
            [FieldError("body.is_closed_won", "a won deal is closed: send is_closed true")]
        )
    if opportunity.closed_at is not None and opportunity.closed_at < opportunity.opened_at:
        raise InvalidInput([FieldError("body.closed_at", "is before opened_at")])
    session.flush()
    _move_contact(session, opportunity)
    account = session.get(Account, opportunity.account_id)
    kind = (
        "opportunity.closed_won"
        if opportunity.is_closed_won and not was_won
        else "opportunity.updated"
    )
    _publish(session, opportunity, kind, account.domain if account else contacts.NO_ACCOUNT)
    return opportunity


def get(session: Session, *, opportunity_id: uuid.UUID) -> Opportunity:
    return get_or_404(session, Opportunity, opportunity_id, label="opportunity")


def list(
    session: Session, *, after: uuid.UUID | None, limit: int, account_id: uuid.UUID | None = None
) -> Sequence[Opportunity]:
    query = newest_first(session, Opportunity, after=after)
    if account_id is not None:
        query = query.where(Opportunity.account_id == account_id)
    return session.scalars(query.limit(limit)).all()


def _account(session: Session, opportunity_in: s.OpportunityCreate) -> Account:
    if opportunity_in.account_id is not None:
        found = session.get(Account, opportunity_in.account_id)
        if found is None:
            raise InvalidInput([FieldError("body.account_id", "no account with this id")])
        return found
    domain = (opportunity_in.account_domain or "").strip().lower()
    found = session.scalar(select(Account).where(Account.domain == domain))
    if found is None:
        raise InvalidInput(
            [FieldError("body.account_domain", f"no account with domain {domain!r}")]
        )
    return found


def _live_contact(session: Session, contact_id: uuid.UUID) -> uuid.UUID:
    """The surviving profile of ``contact_id``; 422 naming the field when there is none."""
    if session.get(Contact, contact_id) is None:
        raise InvalidInput([FieldError("body.primary_contact_id", "no contact with this id")])
    return contacts.get(session, contact_id=contact_id).id


def _move_contact(session: Session, opportunity: Opportunity) -> None:
    """Opening a deal makes its contact an ``opportunity`` (dated ``opened_at``); winning it a
    ``customer`` (dated ``closed_at``) — through ``opportunity`` first, so time in stage and
    conversion count the deal. Exits (disqualified, churned) are left to people."""
    if opportunity.primary_contact_id is None:
        return
    contact = contacts.get(session, contact_id=opportunity.primary_contact_id)
    steps = [(Stage.OPPORTUNITY, opportunity.opened_at, "opened")]
    if opportunity.is_closed_won:
        steps.append((Stage.CUSTOMER, opportunity.closed_at or opportunity.opened_at, "won"))
    for target, at, verb in steps:
        current = Stage(contact.stage)
        if current in (Stage.DISQUALIFIED, Stage.CHURNED) or not can_move(current, target):
            continue
        contacts.set_stage(
            session,
            contact=contact,
            to_stage=target,
            reason=f"deal {opportunity.name!r} {verb}",
            source="opportunity",
            at=max(at, contact.stage_changed_at),
        )


def _publish(session: Session, opportunity: Opportunity, event_type: str, tenant: str) -> None:
    outbox.publish(
        session,
        topic=TOPIC,
        event_type=event_type,
        tenant_id=tenant,
        payload={
            "opportunity_id": str(opportunity.id),
            "account_id": str(opportunity.account_id),
            "primary_contact_id": str(opportunity.primary_contact_id)
            if opportunity.primary_contact_id
            else None,
            "amount": str(Decimal(opportunity.amount)),
            "currency": opportunity.currency,
            "stage": opportunity.stage,
            "is_closed": opportunity.is_closed,
            "is_closed_won": opportunity.is_closed_won,
        },
    )
