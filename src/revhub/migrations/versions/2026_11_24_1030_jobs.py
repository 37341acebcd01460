"""Scheduled jobs: one row per run; (job, scheduled_for) unique makes a scheduled run once.

Revision ID: 20261124jobs
Revises: 1c6c9933202f
Create Date: 2026-11-24 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import revhub.core.db

revision: str = "20261124jobs"
down_revision: str | None = "1c6c9933202f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("trigger", sa.String(length=250), nullable=False),
        sa.Column("scheduled_for", revhub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", revhub.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", revhub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", revhub.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rows_processed", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
        sa.UniqueConstraint("job", "scheduled_for", name=op.f("uq_job_run_job_scheduled_for")),
    )
    with op.batch_alter_table("job_run", schema=None) as batch_op:
        batch_op.create_index("ix_job_run_job_created_at", ["job", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_run_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_run_status"))
        batch_op.drop_index("ix_job_run_job_created_at")
    op.drop_table("job_run")
