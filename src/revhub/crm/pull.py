"""Pull: contact and deal changes from a CRM into the hub's contacts and opportunities.

A run reads every record the CRM changed since the last pull (all of them on ``--full``)
page by page, and merges each into its hub record field by field (:mod:`revhub.crm.merge`).
A record the hub wrote and nobody changed since — our own write read back — merges to no
change (echo suppression by content, which holds even where the vendor's write answer has
no timestamp), and a record whose last-modified time is the one our write returned is
skipped before it is read.

Deals become opportunities through the sales domain's own functions, so a deal closed-won
in the CRM moves its contact to ``customer`` and publishes what attribution recomputes on.
A deal the hub has not seen is created when its contact is known (by the mapped
``lead_id``, or ``contact_crm_id``: the CRM id of a contact the hub has pushed).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts import service as contacts
from revhub.contacts.models import Account, Contact
from revhub.contacts.pii import Pii
from revhub.core.db import Database, utcnow
from revhub.core.errors import Conflict as ConflictError
from revhub.core.errors import RevHubError
from revhub.core.events import outbox
from revhub.crm.connectors.base import Changes, ConnectorError, ObjectKind, RateLimited, Record
from revhub.crm.mappings import FieldType, Mappings, ObjectMap, Owner
from revhub.crm.merge import TOPIC, Merged, Side, close_conflict, get_conflict, merge_record
from revhub.crm.models import Conflict, CrmConnection, CrmLink, PendingPush, SyncCursor, SyncRun
from revhub.crm.personal import agree, agreed, in_event, open_value
from revhub.crm.push import MAX_PAUSES, Progress, Sleep
from revhub.crm.records import canon, contact_values, deal_values
from revhub.crm.runs import RunLog, finish_run, start_run
from revhub.crm.service import Target
from revhub.sales import opportunities
from revhub.sales import schemas as sales_schemas
from revhub.sales.models import Lead, Opportunity, SalesRep

T = TypeVar("T")

BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)
CLOSED_STAGES = {"Closed Won", "Closed Lost"}
PROFILE_FIELDS = ("email", "first_name", "last_name", "phone", "company", "job_title", "country")

Outcome = tuple[uuid.UUID | None, str, str | None]
"""A pulled record's hub id (None: none), outcome and error."""


def pull(
    db: Database,
    pii: Pii,
    target: Target,
    kind: ObjectKind,
    *,
    trigger: str,
    full: bool = False,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
) -> SyncRun:
    """One pull run of ``kind`` from ``target``; returns the finished run."""
    log = start_run(
        db,
        connection_id=target.connection_id,
        direction="pull",
        kind=kind,
        trigger=trigger,
        full=full,
    )
    with db.reading() as session:
        cursor = session.get(SyncCursor, (target.connection_id, kind))
        since = BEGINNING if full or cursor is None else cursor.pulled_until
    read = Read()
    place: str | None = None
    try:
        while True:
            page = changes_page(target, log, kind, since, place, sleep)
            _apply_page(db, pii, target, log, kind, page.records, read)
            if progress is not None:
                progress(sum(log.counts.values()), 0)
            if page.cursor is None:
                break
            place = page.cursor
    except ConnectorError as exc:
        log.detail = f"CRM unavailable: {exc}; the next pull starts where this one stopped."
        return finish_run(db, log, status="failed")
    except Exception as exc:
        log.detail = f"stopped by an error: {_reason(exc)}; the next pull starts again."
        finish_run(db, log, status="failed")
        raise
    if read.until is not None:
        _advance(db, target, kind, read.until)
    if read.held_at is not None:
        log.detail = (
            "failed records are read again by the next pull (the cursor waits at the first)"
        )
    return finish_run(db, log)


@dataclass
class Read:
    """How far a pull got: the latest vendor time read, and the earliest of a record that
    failed (the cursor stops there, so the next pull reads it again)."""

    latest: datetime | None = None
    held_at: datetime | None = None

    @property
    def until(self) -> datetime | None:
        return self.held_at if self.held_at is not None else self.latest


def changes_page(
    target: Target, log: RunLog, kind: ObjectKind, since: datetime, place: str | None, sleep: Sleep
) -> Changes:
    """One page of changes, its owner ids read as e-mails."""
    page = patiently(log, sleep, lambda: target.connector.changes(kind, since, place))
    return Changes(_with_owners(target, kind, page.records, log, sleep), page.cursor)


def patiently(log: RunLog, sleep: Sleep, call: Callable[[], T]) -> T:
    """``call()``, a rate limit waited out (up to ``MAX_PAUSES`` times) and the same call
    made again."""
    for _ in range(MAX_PAUSES):
        try:
            return call()
        except RateLimited as exc:
            log.paused_seconds += exc.retry_after
            sleep(exc.retry_after)
    return call()


def _with_owners(
    target: Target, kind: ObjectKind, records: list[Record], log: RunLog, sleep: Sleep
) -> list[Record]:
    """Owner fields (type ``owner``) hold a CRM user id and the hub knows reps by e-mail:
    each id is read as its user's e-mail (the connector asks once per user), before the
    page's transaction opens."""
    owned = [
        m.crm for m in getattr(target.mapping, kind).fields.values() if m.type is FieldType.OWNER
    ]
    if not owned:
        return records

    def email_of(user: str) -> str | None:
        return patiently(log, sleep, lambda: target.connector.user_email(user))

    read: list[Record] = []
    for record in records:
        fields = dict(record.fields)
        for name in owned:
            if fields.get(name) not in (None, ""):
                fields[name] = email_of(str(fields[name]))
        read.append(replace(record, fields=fields))
    return read


def _apply_page(
    db: Database,
    pii: Pii,
    target: Target,
    log: RunLog,
    kind: ObjectKind,
    records: list[Record],
    read: Read,
) -> None:
    """Merge one page in one transaction, each record in a savepoint of its own: a record
    the hub refuses, or that breaks a rule of the database (a cloned deal carrying another
    deal's hub id), fails alone and is read again by the next pull."""
    apply = apply_contact if kind == "contact" else apply_deal
    with db.transaction() as session:
        for record in records:
            try:
                with session.begin_nested():
                    hub_id, outcome, error = apply(session, pii, target, record)
            except Exception as exc:  # one record must not stop the page: it fails alone
                hub_id, outcome, error = None, "failed", _reason(exc)
                if read.held_at is None or record.modified_at < read.held_at:
                    read.held_at = record.modified_at
            log.record(session, hub_id, outcome, crm_id=record.crm_id, error=error)
            if read.latest is None or record.modified_at > read.latest:
                read.latest = record.modified_at


def _reason(exc: Exception) -> str:
    if isinstance(exc, RevHubError):
        return exc.detail
    return str(exc).splitlines()[0][:500]


def _advance(db: Database, target: Target, kind: ObjectKind, latest: datetime) -> None:
    with db.transaction() as session:
        cursor = session.get(SyncCursor, (target.connection_id, kind))
        if cursor is None:
            session.add(
                SyncCursor(connection_id=target.connection_id, kind=kind, pulled_until=latest)
            )
        elif latest > cursor.pulled_until:
            cursor.pulled_until = latest


def _link(session: Session, target: Target, kind: ObjectKind, crm_id: str) -> CrmLink | None:
    return session.scalar(
        select(CrmLink).where(
            CrmLink.connection_id == target.connection_id,
            CrmLink.kind == kind,
            CrmLink.crm_id == crm_id,
        )
    )


def _keep(
    session: Session,
    target: Target,
    kind: ObjectKind,
    hub_id: uuid.UUID,
    record: Record,
    link: CrmLink | None,
    merged: Merged,
) -> None:
    if link is None:
        link = CrmLink(
            connection_id=target.connection_id,
            kind=kind,
            hub_id=hub_id,
            crm_id=record.crm_id,
            pushed={},
        )
        session.add(link)
    agree(target.pii, link, merged.agreed)
    link.crm_modified_at = record.modified_at
    link.synced_at = utcnow()
    if (
        merged.hub_won
        and kind == "contact"
        and session.get(PendingPush, (target.connection_id, hub_id)) is None
    ):
        session.add(PendingPush(connection_id=target.connection_id, hub_id=hub_id))


def _echo(target: Target, object_map: ObjectMap, link: CrmLink | None, record: Record) -> bool:
    """Whether the CRM changed nothing the hub reads since the link's last agreed state —
    our own write read back, or a record merged already — so it is skipped before the hub
    side is read. By content, field by field, never by time: our write's vendor time also
    covers a CRM edit made just before it, which must still come back."""
    if link is None:
        return False
    base = agreed(target.pii, link)
    for name, mapped in object_map.fields.items():
        if mapped.owner is Owner.MARKETING or mapped.crm not in record.fields:
            continue
        theirs = canon(mapped, record.fields[mapped.crm], from_crm=True)
        if theirs is not None and theirs != base.get(name):
            return False
    return True


# --- contacts ----------------------------------------------------------------------------


def apply_contact(session: Session, pii: Pii, target: Target, record: Record) -> Outcome:
    """Merge a CRM contact into its hub profile (found by link, else by the sync key)."""
    object_map = target.mapping.contact
    link = _link(session, target, "contact", record.crm_id)
    contact = _contact_of(session, pii, target, record, link)
    if contact is None:
        return None, "unchanged", "not in the hub: a contact created in the CRM is not imported"
    if record.deleted:
        if link is not None:
            session.delete(link)
        return contact.id, "deleted", None
    if _echo(target, object_map, link, record):
        return contact.id, "unchanged", None
    values = contact_values(session, pii, [contact.id]).get(contact.id, {})
    side = Side(
        "contact", contact.id, values, contact.updated_at, contacts.tenant_of(session, contact)
    )
    merged = merge_record(session, target, object_map, side, record, agreed(target.pii, link))
    changed = set_contact_fields(session, pii, contact, merged.to_hub)
    _keep(session, target, "contact", contact.id, record, link, merged)
    return contact.id, "updated" if changed else "unchanged", None


def _contact_of(
    session: Session, pii: Pii, target: Target, record: Record, link: CrmLink | None
) -> Contact | None:
    if link is not None:
        return contacts.get(session, contact_id=link.hub_id)
    object_map = target.mapping.contact
    mapped = object_map.fields[object_map.key]
    key = mapped.to_hub(record.fields.get(mapped.crm))
    if key is None:
        return None
    if object_map.key == "email":
        return contacts.get_by_email(session, pii, email=str(key))
    if object_map.key == "lead_id":
        lead = session.get(Lead, _uuid(key))
        return contacts.get(session, contact_id=lead.contact_id) if lead else None
    return None


def set_contact_fields(
    session: Session, pii: Pii, contact: Contact, changes: dict[str, Any]
) -> bool:
    """Apply CRM values to a profile (hub field names and forms); ``owner_email`` moves the
    lead to the rep with that address when the hub knows one.

    Returns whether the hub changed: a CRM owner the hub has no rep for (a Salesforce lead
    the API made is owned by the integration user) changes nothing, so such a record,
    however new its owner value, is pulled as ``unchanged``."""
    changed = False
    given: dict[str, Any] = {
        k: str(v) for k, v in changes.items() if k in PROFILE_FIELDS and v is not None
    }
    if given:
        profile = replace(contacts.Profile(), **given)
        contacts.update_profile(session, pii, contact=contact, profile=profile)
        contact.updated_at = utcnow()
        changed = True
    if changes.get("owner_email"):
        rep = session.scalar(
            select(SalesRep).where(SalesRep.email == str(changes["owner_email"]).lower())
        )
        lead = session.scalar(select(Lead).where(Lead.contact_id == contact.id))
        if rep is not None and lead is not None and lead.owner_rep_id != rep.id:
            lead.owner_rep_id, lead.in_queue = rep.id, False
            changed = True
    return changed


# --- deals -------------------------------------------------------------------------------


def apply_deal(session: Session, pii: Pii, target: Target, record: Record) -> Outcome:
    """Merge a CRM deal into its opportunity, creating it when its contact is known."""
    object_map = target.mapping.deal
    link = _link(session, target, "deal", record.crm_id)
    opportunity = _opportunity_of(session, target, record, link)
    if record.deleted:
        if link is not None:
            session.delete(link)
        return (opportunity.id if opportunity else None), "deleted", None
    if opportunity is None:
        return _new_deal(session, target, record)
    if _echo(target, object_map, link, record):
        return opportunity.id, "unchanged", None
    side = Side(
        "deal",
        opportunity.id,
        deal_values(session, opportunity),
        opportunity.updated_at,
        _tenant(session, opportunity),
    )
    merged = merge_record(session, target, object_map, side, record, agreed(target.pii, link))
    changes = _deal_changes(merged.to_hub, opportunity)
    if changes:
        opportunities.update(
            session,
            opportunity_id=opportunity.id,
            opportunity_in=sales_schemas.OpportunityUpdate.model_validate(changes),
        )
    _keep(session, target, "deal", opportunity.id, record, link, merged)
    return opportunity.id, "updated" if changes else "unchanged", None


def _opportunity_of(
    session: Session, target: Target, record: Record, link: CrmLink | None
) -> Opportunity | None:
    if link is not None:
        return session.get(Opportunity, link.hub_id)
    if record.key:
        found = session.get(Opportunity, _uuid(record.key)) if _is_uuid(record.key) else None
        if found is not None:
            return found
    return session.scalar(
        select(Opportunity).where(
            Opportunity.source == target.name[:32], Opportunity.external_id == record.crm_id
        )
    )


def _new_deal(session: Session, target: Target, record: Record) -> Outcome:
    object_map = target.mapping.deal
    values = {
        name: mapped.to_hub(record.fields.get(mapped.crm))
        for name, mapped in object_map.fields.items()
        if mapped.crm in record.fields
    }
    contact = _deal_contact(session, target, values)
    if contact is None:
        return (
            None,
            "failed",
            "the deal names no contact the hub knows (map lead_id or contact_crm_id on the deal)",
        )
    if contact.account_id is None:
        return (
            None,
            "failed",
            "the deal's contact has no account (a personal e-mail domain): give the contact a "
            "company domain in the hub, then pull again",
        )
    fields = _deal_changes(values, None)
    closed_at = fields.get("closed_at")
    opened_at = min(record.modified_at, closed_at) if closed_at else record.modified_at
    created = opportunities.create(
        session,
        opportunity_in=sales_schemas.OpportunityCreate.model_validate(
            {
                "account_id": contact.account_id,
                "primary_contact_id": contact.id,
                "name": fields.get("name") or f"Deal {record.crm_id}",
                "amount": fields.get("amount", Decimal(0)),
                "currency": fields.get("currency") or target.currency,
                "stage": fields.get("stage") or "Open",
                "is_closed": fields.get("is_closed", False),
                "is_closed_won": fields.get("is_closed_won", False),
                "opened_at": opened_at,
                "closed_at": closed_at,
                "external_id": record.crm_id,
            }
        ),
        source=target.name[:32],
    )
    agreed = {
        name: canon(mapped, record.fields[mapped.crm], from_crm=True)
        for name, mapped in object_map.fields.items()
        if mapped.crm in record.fields
    }
    merged = Merged(agreed={k: v for k, v in agreed.items() if v is not None})
    _keep(session, target, "deal", created.id, record, None, merged)
    return created.id, "created", None


def _deal_contact(session: Session, target: Target, values: dict[str, Any]) -> Contact | None:
    if values.get("lead_id") and _is_uuid(values["lead_id"]):
        lead = session.get(Lead, _uuid(values["lead_id"]))
        if lead is not None:
            return contacts.get(session, contact_id=lead.contact_id)
    if values.get("contact_crm_id"):
        link = _link(session, target, "contact", str(values["contact_crm_id"]))
        if link is not None:
            return contacts.get(session, contact_id=link.hub_id)
    return None


def _deal_changes(values: dict[str, Any], opportunity: Opportunity | None) -> dict[str, Any]:
    """CRM deal values as opportunity fields: dates as UTC times, closed and won derived
    from the stage where the CRM has no such field (HubSpot's ``closedwon``)."""
    changes: dict[str, Any] = {}
    for name in ("name", "amount", "currency", "stage", "is_closed", "is_closed_won", "closed_at"):
        if values.get(name) is not None:
            changes[name] = values[name]
    if isinstance(changes.get("closed_at"), date) and not isinstance(
        changes["closed_at"], datetime
    ):
        changes["closed_at"] = datetime.combine(changes["closed_at"], datetime.min.time(), UTC)
    stage = changes.get("stage") or (opportunity.stage if opportunity else None)
    won = changes.get("is_closed_won", opportunity.is_closed_won if opportunity else False)
    if "is_closed_won" not in changes and stage is not None and "stage" in changes:
        won = stage == "Closed Won"
        changes["is_closed_won"] = won
    if won or stage in CLOSED_STAGES:
        changes["is_closed"] = True
    if opportunity is not None:
        changes = {k: v for k, v in changes.items() if getattr(opportunity, k) != v}
    return changes


def _tenant(session: Session, opportunity: Opportunity) -> str:
    account = session.get(Account, opportunity.account_id)
    return account.domain if account else contacts.NO_ACCOUNT


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


# --- conflicts -----------------------------------------------------------------------------


def resolve_conflict(
    session: Session, pii: Pii, mappings: Mappings, *, conflict_id: uuid.UUID, side: str, by: str
) -> Conflict:
    """Settle a queued conflict with the side a person chose. ``crm``: the CRM's value is
    applied to the hub. ``hub``: the hub keeps its value, and a contact is queued for the
    real-time push so the CRM gets it (a CRM-owned field, such as a deal amount, is not
    written to the CRM: the hub keeps its own value). Either way the link now holds the
    CRM's value as the common ancestor, so the same disagreement is not raised again."""
    conflict = get_conflict(session, conflict_id=conflict_id)
    chosen = close_conflict(session, pii, conflict, side=side, by=by)
    connection = session.get_one(CrmConnection, conflict.connection_id)
    object_map = getattr(mappings.of(connection.crm), conflict.kind)
    mapped = object_map.fields.get(conflict.field)
    if mapped is None:
        raise ConflictError(
            f"The mappings in force no longer map {conflict.kind} field {conflict.field!r}; "
            "map it again (REVHUB_CRM_MAPPINGS) to settle this conflict."
        )
    if side == "crm":
        try:
            _apply_choice(session, pii, conflict, mapped.to_hub(chosen))
        except (ValidationError, ValueError) as exc:
            raise ConflictError(
                f"The CRM's value {chosen!r} cannot be applied to the hub ({_reason(exc)}); "
                "correct it in the CRM, or keep the hub's value with side 'hub'."
            ) from exc
    link = session.scalar(
        select(CrmLink).where(
            CrmLink.connection_id == conflict.connection_id,
            CrmLink.kind == conflict.kind,
            CrmLink.hub_id == conflict.hub_id,
        )
    )
    if link is not None:
        agree(pii, link, {conflict.field: open_value(pii, conflict.crm_value)})
    if side == "hub" and conflict.kind == "contact":
        key = (conflict.connection_id, conflict.hub_id)
        if session.get(PendingPush, key) is None:
            session.add(PendingPush(connection_id=conflict.connection_id, hub_id=conflict.hub_id))
    outbox.publish(
        session,
        topic=TOPIC,
        event_type="crm.conflict_resolved",
        tenant_id=contacts.NO_ACCOUNT,
        payload={
            "conflict_id": str(conflict.id),
            "field": conflict.field,
            "side": side,
            **in_event(conflict.field, value=chosen),
            "resolved_by": conflict.resolved_by,
        },
    )
    return conflict


def _apply_choice(session: Session, pii: Pii, conflict: Conflict, value: Any) -> None:
    if conflict.kind == "contact":
        contact = contacts.get(session, contact_id=conflict.hub_id)
        set_contact_fields(session, pii, contact, {conflict.field: value})
        return
    opportunity = session.get_one(Opportunity, conflict.hub_id)
    changes = _deal_changes({conflict.field: value}, opportunity)
    if changes:
        opportunities.update(
            session,
            opportunity_id=opportunity.id,
            opportunity_in=sales_schemas.OpportunityUpdate.model_validate(changes),
        )
