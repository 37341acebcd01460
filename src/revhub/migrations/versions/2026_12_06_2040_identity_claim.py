"""Contacts: identity claims, which captures running side by side on PostgreSQL wait on
instead of advisory locks (rows live only inside the claiming transaction).

Revision ID: 20261206identityclaim
Revises: 20261205conflictidx
Create Date: 2026-12-06 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261206identityclaim"
down_revision: str | None = "20261205conflictidx"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_claim",
        sa.Column("lock_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("lock_key", name=op.f("pk_identity_claim")),
    )


def downgrade() -> None:
    op.drop_table("identity_claim")
