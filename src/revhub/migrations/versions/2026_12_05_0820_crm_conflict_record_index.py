"""CRM sync: conflicts indexed by record and field, so a pull finds a record's open
conflict without scanning the queue.

Revision ID: 20261205conflictidx
Revises: 20261205synclease
Create Date: 2026-12-05 08:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261205conflictidx"
down_revision: str | None = "20261205synclease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_crm_conflict_record",
        "crm_conflict",
        ["connection_id", "kind", "hub_id", "field"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_crm_conflict_record", table_name="crm_conflict")
