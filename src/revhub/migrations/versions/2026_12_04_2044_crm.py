"""CRM connections: each CRM account the hub syncs with, its credentials sealed.

Revision ID: 20261204crm
Revises: 20261124attribution
Create Date: 2026-12-04 20:44:45.085526
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import revhub.core.db

revision: str = "20261204crm"
down_revision: str | None = "20261124attribution"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_connection",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("crm", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("credentials_sealed", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", revhub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", revhub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_connection")),
        sa.UniqueConstraint("name", name=op.f("uq_crm_connection_name")),
    )


def downgrade() -> None:
    op.drop_table("crm_connection")
