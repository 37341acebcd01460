"""Re-keying personal data after the PII secret changes (``revhub keys rotate-pii``).

Procedure (README): put the old secret in ``REVHUB_PII_PREVIOUS_KEYS``, set the new one as
``REVHUB_PII_KEY``, run the command, then drop the old secret. Every value sealed with an
old key is sealed again with the new one, and every blind index is recomputed with the new
key — until that is done, look-ups by e-mail or phone miss, so run it before serving traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from revhub.contacts.models import Contact, Identity
from revhub.contacts.pii import Pii
from revhub.contacts.service import identity_key

SEALED_FIELDS = ("email_sealed", "phone_sealed", "first_name_sealed", "last_name_sealed")
BATCH = 500


@dataclass
class RotationReport:
    contacts_scanned: int = 0
    values_resealed: int = 0
    indexes_recomputed: int = 0
    identities_scanned: int = 0
    unreadable: list[str] = field(default_factory=list)


def rotate_pii(
    session: Session, pii: Pii, *, progress: Callable[[int], None] = lambda _n: None
) -> RotationReport:
    """Re-seal stale values and recompute blind indexes; ``progress`` gets rows done."""
    report = RotationReport()
    for contact in session.scalars(select(Contact).execution_options(yield_per=BATCH)):
        _rotate_contact(pii, contact, report)
        report.contacts_scanned += 1
        progress(1)
    for identity in session.scalars(
        select(Identity)
        .where(Identity.sealed_value.is_not(None))
        .execution_options(yield_per=BATCH)
    ):
        _rotate_identity(pii, identity, report)
        report.identities_scanned += 1
        progress(1)
    session.flush()
    return report


def rows_to_rotate(session: Session) -> int:
    contacts = session.scalar(select(func.count()).select_from(Contact)) or 0
    sealed = select(func.count()).select_from(Identity).where(Identity.sealed_value.is_not(None))
    return contacts + (session.scalar(sealed) or 0)


def _rotate_contact(pii: Pii, contact: Contact, report: RotationReport) -> None:
    try:
        for name in SEALED_FIELDS:
            token = getattr(contact, name)
            if token is not None and pii.box.is_stale(token):
                setattr(contact, name, pii.seal(pii.open(token)))
                report.values_resealed += 1
        phone = pii.open(contact.phone_sealed)
    except ValueError as exc:
        report.unreadable.append(f"contact {contact.id}: {exc}")
        return
    wanted = None if phone is None else pii.index("phone", phone)
    if contact.phone_index != wanted:
        contact.phone_index = wanted
        report.indexes_recomputed += 1


def _rotate_identity(pii: Pii, identity: Identity, report: RotationReport) -> None:
    try:
        value = pii.open(identity.sealed_value)
    except ValueError as exc:
        report.unreadable.append(f"identity {identity.id}: {exc}")
        return
    assert value is not None
    if identity.sealed_value is not None and pii.box.is_stale(identity.sealed_value):
        identity.sealed_value = pii.seal(value)
        report.values_resealed += 1
    wanted = identity_key(pii, identity.kind, value)
    if identity.key != wanted:
        identity.key = wanted
        report.indexes_recomputed += 1
