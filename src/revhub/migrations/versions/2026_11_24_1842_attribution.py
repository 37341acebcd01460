"""Attribution: stored reports, each deal's credit, and the indexes that date the inputs.

Revision ID: 20261124attribution
Revises: 20261124sales
Create Date: 2026-11-24 18:42:29.082846
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import revhub.core.db

revision: str = "20261124attribution"
down_revision: str | None = "20261124sales"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attribution_report",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("inputs", sa.String(length=200), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("computed_at", revhub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_attribution_report")),
    )
    op.create_table(
        "deal_attribution",
        sa.Column("opportunity_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=32), nullable=False),
        sa.Column("primary_campaign_id", sa.Uuid(), nullable=True),
        sa.Column("credits", sa.JSON(), nullable=False),
        sa.Column("computed_at", revhub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunity.id"],
            name=op.f("fk_deal_attribution_opportunity_id_opportunity"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["primary_campaign_id"],
            ["campaign.id"],
            name=op.f("fk_deal_attribution_primary_campaign_id_campaign"),
        ),
        sa.PrimaryKeyConstraint("opportunity_id", name=op.f("pk_deal_attribution")),
    )
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.create_index("ix_contact_updated_at", ["updated_at"], unique=False)

    with op.batch_alter_table("opportunity", schema=None) as batch_op:
        batch_op.create_index("ix_opportunity_updated_at", ["updated_at"], unique=False)

    with op.batch_alter_table("touchpoint", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_touchpoint_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("touchpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touchpoint_created_at"))

    with op.batch_alter_table("opportunity", schema=None) as batch_op:
        batch_op.drop_index("ix_opportunity_updated_at")

    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_updated_at")

    op.drop_table("deal_attribution")
    op.drop_table("attribution_report")
