"""Scheduled jobs: runs and their leases.

Revision ID: 20261124jobs
Revises: 1c6c9933202f
Create Date: 2026-11-24 10:30:00
"""

from collections.abc import Sequence

revision: str = "20261124jobs"
down_revision: str | None = "1c6c9933202f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
