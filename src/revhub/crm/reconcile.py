"""Reconciliation: compare the hub's contacts with a CRM's and report what differs.

Seed 000/003 "Data Synchronization" asks for automated discrepancy detection and a sync
accuracy of 99.95 %. The report reads every contact the CRM holds and every contact the hub
would push, and counts a pair as matching when every field the hub writes (``marketing``
and ``shared``) holds the same value on both sides. Accuracy is matching pairs over all
records compared, hub-only and CRM-only records included.

A hub contact that differs or is missing enters the failed-row index, so the next push
repairs it; the run keeps one row per discrepancy, exportable as CSV like any run.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from revhub.contacts.models import Contact
from revhub.contacts.pii import Pii
from revhub.core.crypto import SecretBox
from revhub.core.db import Database
from revhub.crm.connectors.base import ConnectorError, Record
from revhub.crm.mappings import Mappings
from revhub.crm.personal import is_personal
from revhub.crm.pull import BEGINNING, changes_page
from revhub.crm.push import CHUNK, Sleep, links_of
from revhub.crm.records import PUSHED_BY_HUB, canon, contact_values
from revhub.crm.runs import RunLog, finish_run, start_run
from revhub.crm.service import Target, get_connection, open_target
from revhub.sales.models import Lead

TARGET_ACCURACY = 99.95


@dataclass(frozen=True)
class Discrepancy:
    hub_id: uuid.UUID | None
    crm_id: str | None
    problem: str


@dataclass
class Report:
    run_id: uuid.UUID
    compared: int = 0
    matching: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def accuracy_percent(self) -> float:
        return 100.0 if self.compared == 0 else round(100 * self.matching / self.compared, 3)

    @property
    def meets_target(self) -> bool:
        return self.accuracy_percent >= TARGET_ACCURACY


def reconcile_connection(
    db: Database, pii: Pii, box: SecretBox, mappings: Mappings, *, name: str, trigger: str
) -> Report:
    """:func:`reconcile` of the connection ``name`` (404 when unknown), its connector opened
    and closed here; no transaction is held while the CRM answers."""
    with db.reading() as session:
        connection = get_connection(session, name=name)
        session.expunge(connection)
    target = open_target(connection, box, mappings, db, pii)
    try:
        return reconcile(db, pii, target, trigger=trigger)
    finally:
        target.close()


def reconcile(
    db: Database, pii: Pii, target: Target, *, trigger: str = "manual", sleep: Sleep = time.sleep
) -> Report:
    log = start_run(
        db,
        connection_id=target.connection_id,
        direction="reconcile",
        kind="contact",
        trigger=trigger,
        full=True,
    )
    report = Report(run_id=log.run_id)
    try:
        in_crm = _crm_contacts(target, log, sleep)
    except ConnectorError as exc:
        log.detail = f"CRM unavailable: {exc}; nothing was compared."
        finish_run(db, log, status="failed")
        raise
    with db.reading() as session:
        hub_ids = list(
            session.scalars(
                select(Contact.id)
                .join(Lead, Lead.contact_id == Contact.id)
                .where(Contact.merged_into_id.is_(None), Contact.email_sealed.is_not(None))
                .order_by(Contact.created_at, Contact.id)
            )
        )
    seen: set[str] = set()
    for start in range(0, len(hub_ids), CHUNK):
        chunk = hub_ids[start : start + CHUNK]
        with db.reading() as session:
            values = contact_values(session, pii, chunk)
            links = links_of(session, target, "contact", chunk)
        found = []
        for hub_id, hub in values.items():
            link = links.get(hub_id)
            record = in_crm.get(link.crm_id) if link else None
            if record is not None:
                seen.add(record.crm_id)
            found.append(_compare(target, hub_id, hub, record))
        with db.transaction() as session:
            for hub_id, problem, crm_id in found:
                report.compared += 1
                if problem is None:
                    report.matching += 1
                    log.record(session, hub_id, "unchanged", crm_id=crm_id)
                else:
                    report.discrepancies.append(Discrepancy(hub_id, crm_id, problem))
                    log.record(session, hub_id, "failed", crm_id=crm_id, error=problem)
    _crm_only(db, log, report, in_crm, seen)
    log.detail = f"{report.accuracy_percent} % of {report.compared} records match"
    finish_run(db, log)
    return report


def _crm_contacts(target: Target, log: RunLog, sleep: Sleep) -> dict[str, Record]:
    records: dict[str, Record] = {}
    place: str | None = None
    while True:
        page = changes_page(target, log, "contact", BEGINNING, place, sleep)
        records.update({r.crm_id: r for r in page.records if not r.deleted})
        if page.cursor is None:
            return records
        place = page.cursor


def _compare(
    target: Target, hub_id: uuid.UUID, hub: dict[str, Any], record: Record | None
) -> tuple[uuid.UUID, str | None, str | None]:
    if record is None:
        return hub_id, "missing in the CRM", None
    different = []
    for name, mapped in target.mapping.contact.fields.items():
        if mapped.owner not in PUSHED_BY_HUB or hub.get(name) is None:
            continue
        ours = canon(mapped, hub[name], from_crm=False)
        theirs = canon(mapped, record.fields.get(mapped.crm), from_crm=True)
        if ours != theirs:
            different.append(_difference(name, ours, theirs))
    return hub_id, ("; ".join(different) or None), record.crm_id


def _difference(name: str, ours: Any, theirs: Any) -> str:
    """How a field differs, as the run log keeps it: a person's e-mail or name is not
    quoted there (it is stored, and exported as CSV), only said to differ."""
    if is_personal(name):
        return f"{name}: differs (personal data, not quoted)"
    return f"{name}: hub {ours!r}, CRM {theirs!r}"


def _crm_only(
    db: Database, log: RunLog, report: Report, in_crm: dict[str, Record], seen: set[str]
) -> None:
    """CRM contacts no hub contact is linked to: created in the CRM, or orphaned."""
    extra = [r for crm_id, r in in_crm.items() if crm_id not in seen]
    if not extra:
        return
    with db.transaction() as session:
        for record in extra:
            report.compared += 1
            problem = "in the CRM only"
            report.discrepancies.append(Discrepancy(None, record.crm_id, problem))
            log.record(session, None, "failed", crm_id=record.crm_id, error=problem)
