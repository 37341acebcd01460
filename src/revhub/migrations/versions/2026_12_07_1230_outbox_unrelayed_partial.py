"""Events: the relay's index of unrelayed events becomes a partial index on ``seq`` (rows
whose ``relayed_at`` is null), replacing the index on ``(relayed_at, seq)``, whose entries
for relayed rows made each relay scan every event relayed since the last vacuum (see
``OutboxEvent``).

Revision ID: 20261207unrelayed
Revises: 20261206claimedat
Create Date: 2026-12-07 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207unrelayed"
down_revision: str | None = "20261206claimedat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNRELAYED = sa.text("relayed_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_outbox_event_unrelayed", table_name="outbox_event")
    op.create_index(
        "ix_outbox_event_unrelayed",
        "outbox_event",
        ["seq"],
        unique=False,
        postgresql_where=UNRELAYED,
        sqlite_where=UNRELAYED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_event_unrelayed", table_name="outbox_event")
    op.create_index("ix_outbox_event_unrelayed", "outbox_event", ["relayed_at", "seq"])
