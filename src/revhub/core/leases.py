"""Database leases: one holder at a time for a named duty, handed over when it lapses.

The relay (one process moves the outbox to Redis, so order is kept) and the scheduler's
bookkeeping use them. A holder renews before ``ttl`` runs out; if it dies, another process
takes over once the lease has expired.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, Database, utcnow


class Lease(Base):
    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


def acquire(db: Database, *, name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew ``name`` for ``holder``; False while someone else holds it."""
    now = utcnow()
    with db.transaction() as session:
        taken = session.execute(  # type: ignore[attr-defined]
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
        ).rowcount
        if taken:
            return True
        if session.get(Lease, name) is not None:
            return False
    try:
        with db.transaction() as session:
            session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def release(db: Database, *, name: str, holder: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=utcnow())
        )
