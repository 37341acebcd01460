"""Field-level merge of a CRM record into the hub, and the conflict queue.

Each mapped field the CRM may write is merged three ways: the CRM's value, the hub's, and
the value both last agreed on (kept on the link). A field only one side changed takes that
side's value. When both changed it to different values (vendor-specs README, seed 000
"last_write_wins_with_audit_trail"):

* a critical field (``critical`` in the mapping; email, owner, amount, closed-won by
  default) is not decided: it goes to the conflict queue and an alert event is published;
* a ``shared`` field goes to the later write — the vendor's last-modified time against the
  hub record's — and the losing value is kept as a :class:`FieldDecision`;
* a ``crm``-owned field takes the CRM's value, the hub's edit kept the same way.

``marketing`` fields are never read back over the hub's value.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import Pii
from revhub.core.db import utcnow
from revhub.core.errors import Conflict as ConflictError
from revhub.core.errors import FieldError, InvalidInput, NotFound
from revhub.core.events import outbox
from revhub.crm.connectors.base import ObjectKind, Record
from revhub.crm.mappings import ObjectMap, Owner
from revhub.crm.models import Conflict, FieldDecision
from revhub.crm.personal import in_event, open_value, seal_value
from revhub.crm.records import canon
from revhub.crm.service import Target

TOPIC = "crm"


@dataclass
class Merged:
    """What a CRM record changes in the hub: hub values to apply (hub form), the values now
    agreed (canonical, the next merge's ancestor) and whether the hub won a field, so the
    CRM must be written again."""

    to_hub: dict[str, Any] = field(default_factory=dict)
    agreed: dict[str, Any] = field(default_factory=dict)
    hub_won: bool = False
    conflicts: int = 0


@dataclass(frozen=True)
class Side:
    """The hub record being merged: its id, values (hub form), time of its last change and
    the tenant its events are keyed by."""

    kind: ObjectKind
    hub_id: uuid.UUID
    values: dict[str, Any]
    changed_at: datetime
    tenant: str


def merge_record(
    session: Session,
    target: Target,
    object_map: ObjectMap,
    hub: Side,
    record: Record,
    base: dict[str, Any],
) -> Merged:
    """``base``: the values both sides last agreed on, opened (``personal.agreed``)."""
    merged = Merged()
    for name, mapped in object_map.fields.items():
        if mapped.owner is Owner.MARKETING or mapped.crm not in record.fields:
            continue
        raw = record.fields[mapped.crm]
        theirs = canon(mapped, raw, from_crm=True)
        ours = (
            None
            if hub.values.get(name) is None
            else canon(mapped, hub.values[name], from_crm=False)
        )
        if theirs is None or theirs == ours:
            if theirs is not None:
                merged.agreed[name] = theirs
            continue
        was = base.get(name)
        if theirs == was:
            continue
        if ours == was or ours is None:
            _take(merged, name, mapped.to_hub(raw), theirs)
        elif name in target.critical and name in base:
            _queue(session, target, hub, record, name, ours, theirs)
            merged.conflicts += 1
        elif mapped.owner is Owner.SHARED and hub.changed_at > record.modified_at:
            _decide(session, target, hub, record, name, winner="hub", kept=ours, lost=theirs)
            merged.hub_won = True
        else:
            _decide(session, target, hub, record, name, winner="crm", kept=theirs, lost=ours)
            _take(merged, name, mapped.to_hub(raw), theirs)
    return merged


def _take(merged: Merged, name: str, value: Any, agreed: Any) -> None:
    merged.to_hub[name] = value
    merged.agreed[name] = agreed


def _decide(
    session: Session,
    target: Target,
    hub: Side,
    record: Record,
    name: str,
    *,
    winner: str,
    kept: Any,
    lost: Any,
) -> None:
    pii = target.pii
    session.add(
        FieldDecision(
            connection_id=target.connection_id,
            kind=hub.kind,
            hub_id=hub.hub_id,
            field=name,
            winner=winner,
            kept_value=seal_value(pii, name, kept),
            lost_value=seal_value(pii, name, lost),
            hub_changed_at=hub.changed_at,
            crm_changed_at=record.modified_at,
        )
    )


def _queue(
    session: Session, target: Target, hub: Side, record: Record, name: str, ours: Any, theirs: Any
) -> None:
    """Open a conflict (once: a later pull of the same disagreement updates the open one)
    and publish ``crm.conflict_detected`` for the alert consumer and webhooks."""
    open_one = session.scalar(
        select(Conflict).where(
            Conflict.connection_id == target.connection_id,
            Conflict.kind == hub.kind,
            Conflict.hub_id == hub.hub_id,
            Conflict.field == name,
            Conflict.status == "open",
        )
    )
    pii = target.pii
    if open_one is not None:
        open_one.hub_value = seal_value(pii, name, ours)
        open_one.crm_value = seal_value(pii, name, theirs)
        open_one.crm_changed_at = record.modified_at
        return
    conflict = Conflict(
        connection_id=target.connection_id,
        kind=hub.kind,
        hub_id=hub.hub_id,
        crm_id=record.crm_id,
        field=name,
        hub_value=seal_value(pii, name, ours),
        crm_value=seal_value(pii, name, theirs),
        hub_changed_at=hub.changed_at,
        crm_changed_at=record.modified_at,
    )
    session.add(conflict)
    session.flush()
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="crm.conflict_detected",
        tenant_id=hub.tenant,
        payload={
            "conflict_id": str(conflict.id),
            "connection": target.name,
            "kind": hub.kind,
            "hub_id": str(hub.hub_id),
            "crm_id": record.crm_id,
            "field": name,
            **in_event(name, hub_value=ours, crm_value=theirs),
        },
    )


def conflict_values(pii: Pii, conflict: Conflict) -> tuple[Any, Any]:
    """The hub's and the CRM's values, opened to be shown (one no configured key opens is
    said so rather than failing the whole list)."""
    return _shown(pii, conflict.hub_value), _shown(pii, conflict.crm_value)


def _shown(pii: Pii, stored: Any) -> Any:
    try:
        return open_value(pii, stored)
    except ValueError:
        return "(unreadable: sealed by a key this hub does not hold)"


def list_conflicts(session: Session, *, status: str | None, limit: int) -> list[Conflict]:
    query = select(Conflict).order_by(Conflict.detected_at.desc()).limit(limit)
    if status is not None:
        query = query.where(Conflict.status == status)
    return list(session.scalars(query))


def get_conflict(session: Session, *, conflict_id: uuid.UUID) -> Conflict:
    found = session.get(Conflict, conflict_id)
    if found is None:
        raise NotFound("conflict", str(conflict_id))
    return found


def close_conflict(session: Session, pii: Pii, conflict: Conflict, *, side: str, by: str) -> Any:
    """Mark ``conflict`` resolved for ``side``; returns the chosen (canonical) value,
    opened. The caller applies it (to the hub for ``crm``; to the CRM by the next push for
    ``hub``)."""
    if side not in ("hub", "crm"):
        raise InvalidInput([FieldError("body.side", "must be 'hub' or 'crm'")])
    if conflict.status != "open":
        raise ConflictError(f"This conflict was resolved ({conflict.resolution}) already.")
    try:
        chosen = open_value(pii, conflict.crm_value if side == "crm" else conflict.hub_value)
    except ValueError as exc:
        raise ConflictError(
            f"The {side} value of this conflict does not open ({exc}); add the secret that "
            "sealed it to REVHUB_PII_PREVIOUS_KEYS, or choose the other side."
        ) from exc
    conflict.status, conflict.resolution = "resolved", side
    conflict.resolved_by, conflict.resolved_at = by[:200], utcnow()
    return chosen
