"""CRM sync: a lease on each connection (``sync_holder`` until ``sync_until``), so with
several workers one process at a time syncs a connection.

Revision ID: 20261205synclease
Revises: 20261205pushkind
Create Date: 2026-12-05 07:13:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import revhub.core.db

revision: str = "20261205synclease"
down_revision: str | None = "20261205pushkind"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_connection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sync_holder", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("sync_until", revhub.core.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("crm_connection", schema=None) as batch_op:
        batch_op.drop_column("sync_until")
        batch_op.drop_column("sync_holder")
