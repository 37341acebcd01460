"""Reference data: a token per kind (the team, the campaigns, the scoring model) that each
change sets anew, so processes may keep what they read until it changes
(``revhub.core.reference``). The rows start with random tokens.

Revision ID: 20261207reference
Revises: 20261207unrelayed
Create Date: 2026-12-07 15:00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207reference"
down_revision: str | None = "20261207unrelayed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("campaigns", "scoring_model", "team")


def upgrade() -> None:
    table = op.create_table(
        "reference_version",
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_reference_version")),
    )
    op.bulk_insert(table, [{"kind": kind, "token": uuid.uuid4().hex} for kind in KINDS])


def downgrade() -> None:
    op.drop_table("reference_version")
