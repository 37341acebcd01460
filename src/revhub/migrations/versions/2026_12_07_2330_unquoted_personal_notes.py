"""The validation step's notes no longer quote the sealed fields (names, phone, e-mail,
``sales.quality.SEALED_FIELDS``): rewrite the notes already stored, in each capture's steps,
in the events that carried them (the outbox, webhook deliveries, dead letters) and in the
answers kept for idempotent replays, so the database holds no name or phone number in the
clear. Notes about other fields are kept. (On SQLite the write-ahead log still holds the
pages as they were until ``revhub.migrations.upgrade`` empties it, after every upgrade.)

Copies outside the database are not reached: events already relayed to Redis streams
(trimmed as consumers read them) and webhooks already delivered.

Revision ID: 20261207unquoted
Revises: 20261207reference
Create Date: 2026-12-07 23:30:00
"""

import ast
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from revhub.migrations.rows import rewrite_rows

revision: str = "20261207unquoted"
down_revision: str | None = "20261207reference"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANGED = re.compile(r"^(first_name|last_name|phone|email): ('.*'|\".*\") -> ('.*'|\".*\")$", re.S)
BAD_PHONE = re.compile(r"^phone: ('.*'|\".*\") is not a valid number(.*)$", re.S)
TABLES = (
    ("lead_capture", ("id",), "steps"),
    ("outbox_event", ("seq",), "payload"),
    ("idempotent_request", ("key", "credential_id", "route"), "response"),
    ("webhook_delivery", ("id",), "event"),
    ("dead_letter", ("id",), "event"),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")  # the rewritten rows' old bytes are zeroed
    for name, keys, column in TABLES:
        table = sa.table(name, *(sa.column(k) for k in keys), sa.column(column, sa.JSON))
        _rewrite(bind, table, keys, column)


def downgrade() -> None:
    """The quoted values are gone; nothing to put back."""


def _rewrite(
    bind: sa.Connection, table: sa.TableClause, keys: tuple[str, ...], column: str
) -> None:
    """Every row whose JSON holds a quoting note."""
    text = sa.cast(table.c[column], sa.Text)
    quoting = sa.or_(text.like("% -> %"), text.like("%is not a valid number%"))

    def change(row: dict[str, Any]) -> dict[str, Any]:
        unquoted = _unquoted(row[column])
        return {column: unquoted} if unquoted != row[column] else {}

    rewrite_rows(bind, table, keys, [column], change, where=quoting)


def _unquoted(value: Any) -> Any:
    if isinstance(value, str):
        return _note(value)
    if isinstance(value, list):
        return [_unquoted(v) for v in value]
    if isinstance(value, dict):
        return {k: _unquoted(v) for k, v in value.items()}
    return value


def _note(note: str) -> str:
    """The note as ``sales.quality`` words it now (a frozen copy: a migration must not change
    with the application)."""
    if bad := BAD_PHONE.match(note):
        return f"phone: not a valid number{bad.group(2)}"
    changed = CHANGED.match(note)
    if changed is None:
        return note
    name = changed.group(1)
    try:
        before, after = ast.literal_eval(changed.group(2)), ast.literal_eval(changed.group(3))
    except (ValueError, SyntaxError):
        return f"{name}: normalised"
    if name == "email":
        return "email: normalised"
    tidied = " ".join(str(before).split())
    done = ["whitespace tidied"] if tidied != before else []
    if tidied != after:
        done.append("recased" if tidied.lower() == str(after).lower() else "normalised")
    return f"{name}: {' and '.join(done) or 'normalised'}"
