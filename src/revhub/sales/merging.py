"""When two profiles become one, the sales rows of the absorbed one move to the survivor:
touchpoints, score history, notifications, deals, and the lead itself (two leads fold into
the survivor's, keeping every capture and assignment). The survivor is then rescored."""

from __future__ import annotations

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Contact
from revhub.contacts.stages import Stage
from revhub.core.db import utcnow
from revhub.sales import qualification
from revhub.sales.models import (
    Assignment,
    DuplicateReview,
    Lead,
    LeadCapture,
    LeadScore,
    Opportunity,
    SalesNotification,
    ScoreChange,
    Touchpoint,
)


def move_sales_records(session: Session, survivor: Contact, absorbed: Contact) -> None:
    for model, column in (
        (Touchpoint, Touchpoint.contact_id),
        (ScoreChange, ScoreChange.contact_id),
        (SalesNotification, SalesNotification.contact_id),
        (Opportunity, Opportunity.primary_contact_id),
    ):
        session.execute(
            update(model)
            .where(column == absorbed.id)
            .values({column.key: survivor.id})
            .execution_options(synchronize_session="fetch")
        )
    session.execute(
        update(DuplicateReview)
        .where(
            DuplicateReview.status == "open",
            or_(
                DuplicateReview.contact_id == absorbed.id,
                DuplicateReview.candidate_id == absorbed.id,
            ),
        )
        .values(status="merged")
        .execution_options(synchronize_session="fetch")
    )
    _fold_leads(session, survivor, absorbed)
    session.execute(delete(LeadScore).where(LeadScore.contact_id == absorbed.id))
    session.flush()
    if survivor.stage != Stage.ANONYMOUS:
        qualification.rescore(session, people=[survivor], trigger="merge", now=utcnow())


def _fold_leads(session: Session, survivor: Contact, absorbed: Contact) -> None:
    theirs = session.scalar(select(Lead).where(Lead.contact_id == absorbed.id))
    if theirs is None:
        return
    ours = session.scalar(select(Lead).where(Lead.contact_id == survivor.id))
    if ours is None:
        theirs.contact_id = survivor.id
        return
    for model in (LeadCapture, Assignment):
        session.execute(
            update(model)
            .where(model.lead_id == theirs.id)
            .values(lead_id=ours.id)
            .execution_options(synchronize_session="fetch")
        )
    ours.capture_count += theirs.capture_count
    if ours.owner_rep_id is None and theirs.owner_rep_id is not None:
        ours.owner_rep_id, ours.territory_id, ours.in_queue = (
            theirs.owner_rep_id,
            theirs.territory_id,
            False,
        )
    session.delete(theirs)


def install() -> None:
    """Register with contacts (idempotent: importing twice registers once)."""
    if move_sales_records not in contacts.MERGE_HOOKS:
        contacts.MERGE_HOOKS.append(move_sales_records)


install()
