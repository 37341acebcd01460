"""Outbound webhooks: subscriptions and deliveries.

Revision ID: 20261124hooks
Revises: 20261124jobs
Create Date: 2026-11-24 10:31:00
"""

from collections.abc import Sequence

revision: str = "20261124hooks"
down_revision: str | None = "20261124jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
