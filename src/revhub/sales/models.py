"""The sales pipeline's tables: leads and their captures, scores, campaigns, touchpoints,
reps and territories, assignments, opportunities, duplicate reviews and notifications.

The ``contact`` and ``lead`` relationships are never loaded (``lazy="raise"``); they order
a batch's inserts (person, then lead, then what points at them) within one flush."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from revhub.contacts.models import Contact
from revhub.core.db import Base, Money, Timestamped, new_id, utcnow


class Campaign(Timestamped, Base):
    """A marketing campaign: what touchpoints, spend and attribution hang off. ``key`` is the
    name other systems use for it (a ``utm_campaign`` value, an email tool's id)."""

    __tablename__ = "campaign"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32))
    starts_on: Mapped[datetime | None]
    ends_on: Mapped[datetime | None]
    cost_centre: Mapped[str | None] = mapped_column(String(64))


class Touchpoint(Base):
    """One interaction of a person with marketing: what scoring and attribution are made of."""

    __tablename__ = "touchpoint"
    __table_args__ = (
        Index("ix_touchpoint_contact_at", "contact_id", "occurred_at"),
        Index("ix_touchpoint_campaign_at", "campaign_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"))
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaign.id"))
    channel: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Lead(Timestamped, Base):
    """The sales side of a person who came in through marketing: owner, queue, CRM hand-off."""

    __tablename__ = "lead"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"), unique=True)
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    capture_count: Mapped[int] = mapped_column(default=0)
    owner_rep_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales_rep.id"), index=True)
    territory_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("territory.id"))
    in_queue: Mapped[bool] = mapped_column(default=False)
    crm_status: Mapped[str] = mapped_column(String(16), default="pending")


class LeadCapture(Base):
    """Each arrival of a lead (form, sign-up, webinar registration), with the six steps'
    outcome as the API answered it."""

    __tablename__ = "lead_capture"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    lead_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lead.id"), index=True)
    lead: Mapped[Lead] = relationship(lazy="raise")
    capture_type: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaign.id"))
    captured_at: Mapped[datetime]
    steps: Mapped[dict[str, Any]] = mapped_column(JSON)


class LeadScore(Base):
    """The current score of a contact; ``ScoreChange`` keeps how it got there."""

    __tablename__ = "lead_score"

    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"), primary_key=True)
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    fit: Mapped[int] = mapped_column(default=0)
    engagement: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    email_engagement: Mapped[int] = mapped_column(default=0)
    content_pieces: Mapped[int] = mapped_column(default=0)
    web_sessions: Mapped[int] = mapped_column(default=0)
    icp_fit: Mapped[bool] = mapped_column(default=False)
    model_version: Mapped[int] = mapped_column(default=1)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScoreChange(Base):
    """One recomputation that changed a score, with the reasons (rule → points)."""

    __tablename__ = "score_change"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"), index=True)
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    changed_at: Mapped[datetime]
    fit: Mapped[int]
    engagement: Mapped[int]
    total: Mapped[int]
    delta: Mapped[int]
    trigger: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class ScoringModel(Base):
    """The scoring model in force (one row per version; the newest is used)."""

    __tablename__ = "scoring_model"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Territory(Timestamped, Base):
    """Who covers which leads (seed 000 ``assignment_rules: territory_based``). An empty
    list matches anything; the lowest ``priority`` number among matches wins."""

    __tablename__ = "territory"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    priority: Mapped[int] = mapped_column(default=100)
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    regions: Mapped[list[str]] = mapped_column(JSON, default=list)
    industries: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_employees: Mapped[int | None]
    max_employees: Mapped[int | None]


class SalesRep(Timestamped, Base):
    """A rep. ``capacity`` weights the round-robin: a rep with 2 gets twice the leads of 1."""

    __tablename__ = "sales_rep"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    territory_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("territory.id"), index=True)
    capacity: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)
    assigned_count: Mapped[int] = mapped_column(default=0)


class Assignment(Base):
    """Each time a lead got an owner (or went to the queue), and why."""

    __tablename__ = "assignment"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    lead_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lead.id"), index=True)
    lead: Mapped[Lead] = relationship(lazy="raise")
    rep_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales_rep.id"))
    territory_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("territory.id"))
    reason: Mapped[str] = mapped_column(String(500))
    assigned_at: Mapped[datetime]


class Opportunity(Timestamped, Base):
    """A deal. ``opened_at``/``closed_at`` are business dates (a CRM may send history)."""

    __tablename__ = "opportunity"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_opportunity_updated_at", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id"), index=True)
    primary_contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contact.id"))
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    stage: Mapped[str] = mapped_column(String(64))
    is_closed: Mapped[bool] = mapped_column(default=False)
    is_closed_won: Mapped[bool] = mapped_column(default=False)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(32), default="api")
    external_id: Mapped[str | None] = mapped_column(String(128))


class DuplicateReview(Base):
    """A likely duplicate found by fuzzy company + name matching: flagged, never merged blindly."""

    __tablename__ = "duplicate_review"
    __table_args__ = (UniqueConstraint("contact_id", "candidate_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"))
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    candidate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"))
    candidate: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[candidate_id])
    similarity: Mapped[float]
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SalesNotification(Base):
    """What the alert consumer tells sales (an MQL to call within 5 minutes, seed 004)."""

    __tablename__ = "sales_notification"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"), index=True)
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    rep_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales_rep.id"))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
