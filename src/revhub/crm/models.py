"""The CRM domain's tables: the CRM accounts the hub connects to (credentials sealed), the
links between hub and CRM records, sync runs with their row log, the failed-row index, the
real-time push queue, pull cursors, last-write decisions and the conflict queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, Timestamped, new_id, utcnow


class CrmConnection(Timestamped, Base):
    """One CRM account the hub syncs with. ``credentials_sealed`` is the vendor's secrets
    as JSON, AES-GCM sealed with a key derived from the PII secret (DESIGN §6): a copy of
    the database alone does not open the CRM."""

    __tablename__ = "crm_connection"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    crm: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials_sealed: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    sync_holder: Mapped[str | None] = mapped_column(String(128))
    """The process syncing this connection now, if any (see ``crm.sync.Lease``)."""
    sync_until: Mapped[datetime | None] = mapped_column()


class CrmLink(Base):
    """A hub record and its record in one CRM. ``pushed`` holds the CRM field values the hub
    last wrote or read (the common ancestor of a three-way, field-level merge: a field that
    differs from it changed on that side), ``crm_modified_at`` the vendor's time of that
    state (a pulled record with this time is our own write read back: echo suppression)."""

    __tablename__ = "crm_link"
    __table_args__ = (
        UniqueConstraint("connection_id", "kind", "hub_id"),
        Index("ix_crm_link_crm_id", "connection_id", "kind", "crm_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_connection.id"))
    kind: Mapped[str] = mapped_column(String(16))
    hub_id: Mapped[uuid.UUID]
    crm_id: Mapped[str] = mapped_column(String(64))
    pushed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    crm_modified_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncRun(Base):
    """One push or pull of one object kind against one CRM, with its counts by outcome."""

    __tablename__ = "crm_sync_run"
    __table_args__ = (Index("ix_crm_sync_run_started", "connection_id", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_connection.id"))
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    full: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    paused_seconds: Mapped[float] = mapped_column(default=0.0)
    detail: Mapped[str] = mapped_column(Text, default="")


class SyncRow(Base):
    """One row's outcome in a run (created, updated, unchanged, deleted, failed + the
    vendor's error): the run log kept and exported as CSV."""

    __tablename__ = "crm_sync_row"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_sync_run.id"), index=True)
    hub_id: Mapped[uuid.UUID | None]
    crm_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class FailedRow(Base):
    """A hub record whose last push failed: every later run of its connection retries it."""

    __tablename__ = "crm_failed_row"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crm_connection.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    hub_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=1)
    first_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingPush(Base):
    """A contact or deal the ``crm-sync`` consumer saw change, waiting for the real-time
    push (hub ids are UUIDs, unique across kinds)."""

    __tablename__ = "crm_pending_push"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crm_connection.id"), primary_key=True
    )
    hub_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="contact", server_default="contact")
    queued_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SyncRequest(Base):
    """A sync asked for (the 02:00 schedule, or a person over the API) for the worker to run:
    a sync takes minutes and is not held inside a request or a job's transaction."""

    __tablename__ = "crm_sync_request"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crm_connection.id"), primary_key=True
    )
    full: Mapped[bool] = mapped_column(default=False)
    trigger: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncCursor(Base):
    """Where the last successful pull of one object kind from one CRM got to."""

    __tablename__ = "crm_sync_cursor"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crm_connection.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    pulled_until: Mapped[datetime]


class FieldDecision(Base):
    """A shared field both sides changed: which value won by last write (vendor time against
    the hub's) and the value that lost, kept as the audit trail of the merge."""

    __tablename__ = "crm_field_decision"
    __table_args__ = (Index("ix_crm_field_decision_hub", "kind", "hub_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_connection.id"))
    kind: Mapped[str] = mapped_column(String(16))
    hub_id: Mapped[uuid.UUID]
    field: Mapped[str] = mapped_column(String(64))
    winner: Mapped[str] = mapped_column(String(8))
    kept_value: Mapped[Any] = mapped_column(JSON)
    lost_value: Mapped[Any] = mapped_column(JSON)
    hub_changed_at: Mapped[datetime]
    crm_changed_at: Mapped[datetime]
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conflict(Base):
    """A critical field (email, owner, amount, closed-won by default) both sides changed:
    never resolved automatically; a person picks the side over the API."""

    __tablename__ = "crm_conflict"
    __table_args__ = (
        Index("ix_crm_conflict_status", "status", "detected_at"),
        Index("ix_crm_conflict_record", "connection_id", "kind", "hub_id", "field"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_connection.id"))
    kind: Mapped[str] = mapped_column(String(16))
    hub_id: Mapped[uuid.UUID]
    crm_id: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(64))
    hub_value: Mapped[Any] = mapped_column(JSON)
    crm_value: Mapped[Any] = mapped_column(JSON)
    hub_changed_at: Mapped[datetime]
    crm_changed_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution: Mapped[str | None] = mapped_column(String(8))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
