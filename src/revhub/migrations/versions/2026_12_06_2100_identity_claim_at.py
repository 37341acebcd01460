"""Contacts: identity claims are kept and locked by an upsert (``claimed_at``) instead of
inserted and deleted inside the claiming transaction, which relied on PostgreSQL making a
second insert wait for a row its own transaction had already deleted.

Revision ID: 20261206claimedat
Revises: 20261206identityclaim
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import revhub.core.db

revision: str = "20261206claimedat"
down_revision: str | None = "20261206identityclaim"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "identity_claim",
        sa.Column("claimed_at", revhub.core.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("identity_claim", "claimed_at")
