"""Audit rows and the chain head that orders and seals them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, SeqType

GENESIS_HASH = "0" * 64


class AuditEntry(Base):
    """One audited action. ``hash`` = HMAC(audit key, ``prev_hash`` + the entry's fields)."""

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(200))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None]
    client_ip: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row holding the chain's last ``seq`` and hash.

    Appending updates this row first, which takes its row lock on PostgreSQL (the write lock
    on SQLite) until commit: appends from any number of processes line up one at a time, so
    the chain never forks. Deleting the newest entries is caught by comparing with it.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(SeqType)
    last_hash: Mapped[str] = mapped_column(String(64))
