"""Personal values in the CRM merge state, sealed at rest as in the contact itself (DESIGN §6).

The field-level merge keeps values: per linked record those both sides last agreed on
(``CrmLink.pushed``, the next merge's common ancestor), the value each decision kept and
lost (``FieldDecision``) and the two sides of each queued conflict (``Conflict``). For a
contact these include the person's e-mail and names, which the hub otherwise holds only
sealed with the PII key. Here too: a personal field's value is stored as
``{"sealed": <token>}`` (its JSON, sealed with the PII box), every other value as it is.
The merge compares opened values, so sealing changes no decision.

Values stored in the clear before sealing was introduced (migration ``20261208sealed``
seals them) still open as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from revhub.contacts.pii import Pii
from revhub.core.crypto import Resealed
from revhub.crm.models import Conflict, CrmLink, FieldDecision

PERSONAL_FIELDS = frozenset({"email", "first_name", "last_name", "phone"})
"""Hub fields that hold a person's identity: those the contact itself keeps sealed."""
SEALED = "sealed"


def is_personal(name: str) -> bool:
    return name in PERSONAL_FIELDS


def seal_value(pii: Pii, name: str, value: Any) -> Any:
    """``value`` as stored for field ``name``: sealed when personal (and not null)."""
    if value is None or not is_personal(name):
        return value
    return {SEALED: pii.seal(json.dumps(value))}


def open_value(pii: Pii, stored: Any) -> Any:
    """The value a stored one stands for (ValueError if no configured key opens it)."""
    if _is_sealed(stored):
        return json.loads(pii.open(stored[SEALED]) or "null")
    return stored


def sealed_values(pii: Pii, values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: seal_value(pii, name, value) for name, value in values.items()}


def opened_values(pii: Pii, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    return {name: open_value(pii, value) for name, value in (stored or {}).items()}


def agreed(pii: Pii, link: CrmLink | None) -> dict[str, Any]:
    """The values both sides last agreed on for ``link`` (none without a link)."""
    return {} if link is None else opened_values(pii, link.pushed)


def agree(pii: Pii, link: CrmLink, values: Mapping[str, Any]) -> None:
    """Record ``values`` as agreed on ``link``; the other fields keep their stored form."""
    link.pushed = {**(link.pushed or {}), **sealed_values(pii, values)}


def in_event(name: str, **values: Any) -> dict[str, Any]:
    """``values`` as an event about field ``name`` may carry them: a personal field's are
    withheld (``values_withheld``), since events are copied to the outbox, the bus, dead
    letters, webhook subscribers and sales notifications; read them from the conflict."""
    if is_personal(name):
        return {"values_withheld": True}
    return values


def _is_sealed(stored: Any) -> bool:
    return isinstance(stored, dict) and set(stored) == {SEALED}


def rows_to_reseal(session: Session) -> int:
    return sum(
        session.scalar(select(func.count()).select_from(model)) or 0
        for model in (CrmLink, FieldDecision, Conflict)
    )


def reseal_merge_state(
    session: Session, pii: Pii, report: Resealed, progress: Callable[[int], None]
) -> None:
    """After a key rotation (``revhub keys rotate-pii``): every personal value sealed with a
    previous key, or stored in the clear, sealed with the current one."""
    for link in session.scalars(select(CrmLink).execution_options(yield_per=BATCH)):
        where = f"crm link {link.id}"
        stored = link.pushed or {}
        link.pushed = {n: _resealed(pii, where, n, v, report) for n, v in stored.items()}
        progress(1)
    for decision in session.scalars(select(FieldDecision).execution_options(yield_per=BATCH)):
        where, name = f"crm field decision {decision.id}", decision.field
        decision.kept_value = _resealed(pii, where, name, decision.kept_value, report)
        decision.lost_value = _resealed(pii, where, name, decision.lost_value, report)
        progress(1)
    for conflict in session.scalars(select(Conflict).execution_options(yield_per=BATCH)):
        where, name = f"crm conflict {conflict.id}", conflict.field
        conflict.hub_value = _resealed(pii, where, name, conflict.hub_value, report)
        conflict.crm_value = _resealed(pii, where, name, conflict.crm_value, report)
        progress(1)


BATCH = 500


def _resealed(pii: Pii, where: str, name: str, stored: Any, report: Resealed) -> Any:
    if stored is None or not is_personal(name):
        return stored
    if _is_sealed(stored):
        return {SEALED: report.token(pii.box, where, stored[SEALED])}
    report.resealed += 1
    return seal_value(pii, name, stored)
