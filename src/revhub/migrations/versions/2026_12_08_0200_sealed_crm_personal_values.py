"""Personal values the CRM merge stored in the clear are sealed (``crm.personal``): a
contact's e-mail, first and last name and phone in each link's agreed values, in the field
decisions and in the conflicts, sealed with the PII key as ``{"sealed": token}``. The
copies elsewhere lose them: conflict events (outbox, webhook deliveries, dead letters)
withhold the values of a personal field, sales alerts about such a conflict and
reconciliation's run rows stop quoting them. (On SQLite, ``revhub.migrations.upgrade``
then empties the write-ahead log, which held the pages as they were.)

The PII key is read as the hub reads it (``REVHUB_PII_KEY``, or the embedded key file), and
only when there is something to seal.

Revision ID: 20261208sealed
Revises: 20261207unquoted
Create Date: 2026-12-08 02:00:00
"""

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from revhub.core.crypto import SecretBox
from revhub.migrations.rows import Change, rewrite_rows

revision: str = "20261208sealed"
down_revision: str | None = "20261207unquoted"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERSONAL = ("email", "first_name", "last_name", "phone")
CONFLICT_EVENTS = ("crm.conflict_detected", "crm.conflict_resolved")
QUOTED_DIFFERENCE = re.compile(r"^(email|first_name|last_name|phone): hub .*, CRM .*$", re.S)
QUOTED_ALERT = re.compile(
    r"(field (?:email|first_name|last_name|phone) of .*?) \(hub .*, CRM .*\)(: for .*)$", re.S
)


def upgrade() -> None:
    _BOXES.clear()  # the key as configured now, not as a previous upgrade in this process read it
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")  # the rewritten rows' old bytes are zeroed
    personal, conflicts = ("field", PERSONAL), ("event_type", CONFLICT_EVENTS)
    _rewrite(bind, "crm_link", ("id",), ("pushed",), _sealed_link)
    _rewrite(bind, "crm_field_decision", ("id",), SIDES[0], _sealed_side, only=personal)
    _rewrite(bind, "crm_conflict", ("id",), SIDES[1], _sealed_side, only=personal)
    _rewrite(bind, "outbox_event", ("seq",), ("payload",), _withheld, only=conflicts)
    _rewrite(bind, "webhook_delivery", ("id",), ("event",), _withheld_in_envelope)
    _rewrite(bind, "dead_letter", ("id",), ("event",), _withheld_in_envelope)
    _rewrite(bind, "sales_notification", ("id",), ("message",), _unquoted_alert)
    _rewrite(bind, "crm_sync_row", ("id",), ("error",), _unquoted_differences)


def downgrade() -> None:
    """Sealed values stay sealed (the hub opens them either way); nothing to put back."""


SIDES = (("kept_value", "lost_value"), ("hub_value", "crm_value"))
JSON_COLUMNS = frozenset({"pushed", "kept_value", "lost_value", "hub_value", "crm_value",
                          "payload", "event"})  # fmt: skip


def _rewrite(
    bind: sa.Connection,
    name: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    change: Change,
    *,
    only: tuple[str, tuple[str, ...]] | None = None,
) -> None:
    """``change`` applied to every row of ``name`` (those whose ``only[0]`` column is one of
    ``only[1]``; the row holds that column too)."""
    read = [*columns, *((only[0],) if only else ())]
    table = sa.table(
        name,
        *(sa.column(k) for k in keys),
        *(sa.column(c, sa.JSON if c in JSON_COLUMNS else sa.Text) for c in read),
    )
    where = table.c[only[0]].in_(only[1]) if only else None
    rewrite_rows(bind, table, keys, read, change, where=where)


_BOXES: list[SecretBox] = []
"""The PII box of this upgrade, made at the first value to seal (``upgrade`` empties it)."""


def _seal(value: Any) -> Any:
    if value is None or (isinstance(value, dict) and set(value) == {"sealed"}):
        return value
    if not _BOXES:
        from revhub.core.settings import load_settings

        settings = load_settings()
        _BOXES.append(SecretBox(settings.secrets["pii_key"], "pii", settings.pii_previous))
    return {"sealed": _BOXES[0].seal(json.dumps(value))}


def _sealed_link(row: dict[str, Any]) -> dict[str, Any]:
    pushed = row["pushed"] or {}
    sealed = {k: _seal(v) if k in PERSONAL else v for k, v in pushed.items()}
    return {"pushed": sealed} if sealed != pushed else {}


def _sealed_side(row: dict[str, Any]) -> dict[str, Any]:
    columns = [c for c in row if c.endswith("_value")]
    sealed = {c: _seal(row[c]) for c in columns}
    return sealed if any(sealed[c] != row[c] for c in columns) else {}


def _payload_withheld(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("field") not in PERSONAL:
        return payload
    kept = {k: v for k, v in payload.items() if k not in ("hub_value", "crm_value", "value")}
    return kept | {"values_withheld": True}


def _withheld(row: dict[str, Any]) -> dict[str, Any]:
    payload = row["payload"] or {}
    changed = _payload_withheld(payload)
    return {"payload": changed} if changed != payload else {}


def _withheld_in_envelope(row: dict[str, Any]) -> dict[str, Any]:
    event = row["event"] or {}
    if event.get("event_type") not in CONFLICT_EVENTS:
        return {}
    payload = event.get("payload") or {}
    changed = _payload_withheld(payload)
    return {"event": event | {"payload": changed}} if changed != payload else {}


def _unquoted_alert(row: dict[str, Any]) -> dict[str, Any]:
    message = row["message"] or ""
    changed = QUOTED_ALERT.sub(r"\1 (personal data: see the conflict)\2", message)
    return {"message": changed} if changed != message else {}


def _unquoted_differences(row: dict[str, Any]) -> dict[str, Any]:
    error = row["error"]
    if not error:
        return {}
    parts = [
        QUOTED_DIFFERENCE.sub(r"\1: differs (personal data, not quoted)", p)
        for p in error.split("; ")
    ]
    changed = "; ".join(parts)
    return {"error": changed} if changed != error else {}
