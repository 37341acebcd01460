"""People, accounts, the identities that point at a person, their stage history and consent.

Email, phone and names are stored sealed (AES-GCM, ``*_sealed``); exact look-ups go through
keyed blind indexes (``Identity.key`` for e-mail, ``Contact.phone_index``), never plaintext.
The company name and the e-mail's domain say which company, not which person, and stay
readable: ``company_key`` (normalised name) drives the fuzzy duplicate check,
``email_domain`` the business-email fit.

The many-to-one ``relationship``s here and in the domains above are never loaded
(``lazy="raise"``): they tell the unit of work to insert a person before the rows that
point at them when a batch writes both in one flush.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from revhub.core.db import Base, Timestamped, new_id, utcnow


class Account(Timestamped, Base):
    """A company, keyed by its web domain: the ``tenant_id`` of every event about it."""

    __tablename__ = "account"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    industry: Mapped[str | None] = mapped_column(String(100))
    employee_count: Mapped[int | None]
    country: Mapped[str | None] = mapped_column(String(2))


class Contact(Timestamped, Base):
    """One person. A contact absorbed by a merge keeps its row with ``merged_into_id`` set,
    so ids handed out earlier still resolve to the surviving profile."""

    __tablename__ = "contact"
    __table_args__ = (
        Index("ix_contact_stage_changed", "stage", "stage_changed_at"),
        Index("ix_contact_updated_at", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("account.id"), index=True)
    email_sealed: Mapped[str | None] = mapped_column(Text)
    phone_sealed: Mapped[str | None] = mapped_column(Text)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    email_domain: Mapped[str | None] = mapped_column(String(253))
    first_name_sealed: Mapped[str | None] = mapped_column(Text)
    last_name_sealed: Mapped[str | None] = mapped_column(Text)
    company: Mapped[str | None] = mapped_column(String(200))
    company_key: Mapped[str | None] = mapped_column(String(200), index=True)
    job_title: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    lead_source: Mapped[str | None] = mapped_column(String(64))
    quality_score: Mapped[int | None]
    stage: Mapped[str] = mapped_column(String(16))
    stage_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contact.id"))


class Identity(Base):
    """A key that names a person in some system: e-mail (blind index, value sealed),
    anonymous visitor id, a CRM record id, a product user id. Each key names one contact."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"), index=True)
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    sealed_value: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdentityClaim(Base):
    """An identity a capture has looked up and may create (PostgreSQL only): one row per
    identity ever claimed, locked by the claiming transaction until it ends, so a second
    capture claiming it waits. A row lock lives in the row: a 1,000-lead batch holding
    1,000 advisory locks would take 1,000 entries of PostgreSQL's shared lock table, and a
    few such imports at once would fill it."""

    __tablename__ = "identity_claim"

    lock_key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    claimed_at: Mapped[datetime | None] = mapped_column()


class StageChange(Base):
    """One move through the lifecycle, with when and why: the funnel reports read these."""

    __tablename__ = "stage_change"
    __table_args__ = (Index("ix_stage_change_to_stage_at", "to_stage", "changed_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"), index=True)
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(64))


class Consent(Base):
    """A consent decision for one purpose. Rows are appended, never changed: the latest
    row per purpose is the one in force, the rest are the record regulators ask for."""

    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_contact_purpose", "contact_id", "purpose", "recorded_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact.id"))
    contact: Mapped[Contact] = relationship(lazy="raise", foreign_keys=[contact_id])
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime]
