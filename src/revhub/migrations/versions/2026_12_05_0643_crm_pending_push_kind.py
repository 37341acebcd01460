"""CRM sync: the real-time push queue holds deals too (``kind``), for the attribution
write-back.

Revision ID: 20261205pushkind
Revises: 20261205crmsync
Create Date: 2026-12-05 06:43:08.819458
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261205pushkind"
down_revision: str | None = "20261205crmsync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_pending_push", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="contact", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("crm_pending_push", schema=None) as batch_op:
        batch_op.drop_column("kind")
