"""Push: hub contacts to a CRM, by the mapping, only what changed.

A run picks its contacts (every lead on ``--full``; else those changed since the last run,
or the ones the ``crm-sync`` consumer queued), adds the failed-row index, and goes in
chunks: read the chunk's values, compare each with what its link says the CRM last got
(an unchanged contact is logged ``unchanged`` and not sent), write the rest in the
vendor's batch size, then log each row's outcome and remember what was written.

Failures follow the vendor conventions (vendor-specs README): a rate limit sleeps for the
vendor's wait and sends the same batch again (a refused batch was not applied, so nothing
is sent twice); a CRM that is down or refuses the credentials fails the run's remaining
rows into the failed-row index without calling it again, for the next run to retry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from revhub.attribution.models import DealAttribution
from revhub.contacts.models import Contact
from revhub.contacts.pii import Pii
from revhub.core.db import Database, utcnow
from revhub.crm.connectors.base import ConnectorError, ObjectKind, RateLimited, RowResult, WriteMode
from revhub.crm.mappings import Mode, ObjectMap
from revhub.crm.models import CrmLink, SyncRun
from revhub.crm.personal import agree, agreed
from revhub.crm.records import PUSHED_BY_HUB, contact_values, crm_row, deal_values, synced_state
from revhub.crm.runs import RunLog, failed_ids, finish_run, last_start, start_run
from revhub.crm.service import Target
from revhub.sales.models import Lead, LeadScore, Opportunity

CHUNK = 500
MAX_PAUSES = 30
"""Rate-limit waits one batch may sit out before its rows are failed for the next run (at
HubSpot's 10 s that is five minutes of a limit that does not lift)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each chunk."""
Sleep = Callable[[float], None]
Row = TypeVar("Row")


@dataclass(frozen=True)
class Synced:
    """What a link says, read out of its session (the CRM is called with no session open)."""

    crm_id: str
    pushed: dict[str, Any]
    crm_modified_at: datetime | None


@dataclass(frozen=True)
class Planned:
    hub_id: uuid.UUID
    row: dict[str, Any]
    state: dict[str, Any]


Values = Callable[[Session, Sequence[uuid.UUID]], dict[uuid.UUID, dict[str, Any]]]
"""The hub fields of each record of a chunk that can be pushed."""
Send = Callable[[list[Planned], dict[uuid.UUID, Synced], RunLog], "Sent"]
"""Write planned rows to the CRM: one result per row written, in order."""


def push_contacts(
    db: Database,
    pii: Pii,
    target: Target,
    *,
    trigger: str,
    full: bool = False,
    only: Collection[uuid.UUID] | None = None,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
) -> SyncRun:
    """One push run of contacts to ``target`` by the mapping's key; the finished run."""
    log = start_run(
        db,
        connection_id=target.connection_id,
        direction="push",
        kind="contact",
        trigger=trigger,
        full=full,
    )
    with db.reading() as session:
        retry = set(failed_ids(session, connection_id=target.connection_id, kind="contact"))
        ids = _candidates(session, target, retry, full=full, only=only)
    mode = _write_mode(target.mapping.contact)

    def send(planned: list[Planned], links: dict[uuid.UUID, Synced], log: RunLog) -> Sent:
        rows = [p.row for p in planned]
        return _in_batches(
            target, log, rows, lambda b: target.connector.write("contact", b, mode), sleep
        )

    down = _run(
        db,
        target,
        log,
        "contact",
        ids,
        retry,
        values=lambda session, chunk: contact_values(session, pii, chunk),
        send=send,
        absent="not pushed: merged away or no e-mail",
        progress=progress,
    )
    if target.mapping.contact.mode is Mode.MIRROR:
        down = _delete_merged(db, target, log, down, sleep)
    return _finish(db, log, down)


def push_deals(
    db: Database,
    target: Target,
    *,
    trigger: str,
    full: bool = False,
    only: Collection[uuid.UUID] | None = None,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
) -> SyncRun:
    """One push run of deals: the fields the hub owns (its deal id; the primary campaign of
    the attribution write-back, seed 002 ``syncAttributionToCRM``) written onto the CRM
    deals the hub has linked, by the CRM's own id. Sales creates deals in the CRM, so the
    hub never creates one; a ``create_only`` deal mapping leaves CRM deals alone."""
    log = start_run(
        db,
        connection_id=target.connection_id,
        direction="push",
        kind="deal",
        trigger=trigger,
        full=full,
    )
    if target.mapping.deal.mode is Mode.CREATE_ONLY:
        log.detail = "the deal mapping is create_only: the hub changes no CRM deal"
        return finish_run(db, log)
    with db.reading() as session:
        retry = set(failed_ids(session, connection_id=target.connection_id, kind="deal"))
        ids = _linked_deals(session, target, retry, full=full, only=only)

    def send(planned: list[Planned], links: dict[uuid.UUID, Synced], log: RunLog) -> Sent:
        rows = [(links[p.hub_id].crm_id, p.row) for p in planned]
        return _in_batches(
            target, log, rows, lambda b: target.connector.update_by_id("deal", b), sleep
        )

    down = _run(
        db,
        target,
        log,
        "deal",
        ids,
        retry,
        values=_deal_values,
        send=send,
        absent="not pushed: the opportunity is gone",
        progress=progress,
    )
    return _finish(db, log, down)


def _run(
    db: Database,
    target: Target,
    log: RunLog,
    kind: ObjectKind,
    ids: list[uuid.UUID],
    retry: set[uuid.UUID],
    *,
    values: Values,
    send: Send,
    absent: str,
    progress: Progress | None,
) -> str | None:
    """Push ``ids`` chunk by chunk; returns why the CRM became unusable, if it did."""
    down: str | None = None
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        down = _push_chunk(db, target, log, kind, chunk, retry, down, values, send, absent)
        if progress is not None:
            progress(min(start + CHUNK, len(ids)), len(ids))
    return down


def _delete_merged(
    db: Database, target: Target, log: RunLog, down: str | None, sleep: Sleep
) -> str | None:
    """``mirror`` mode: a contact merged into another is one person with the survivor, so
    the CRM record of the absorbed one is deleted (archived) and its link dropped — unless
    a live contact is linked to that record too (the survivor, written onto it by the
    sync key), which keeps it. A failed delete keeps the link for the next run."""
    live = (
        select(CrmLink.crm_id)
        .join(Contact, Contact.id == CrmLink.hub_id)
        .where(
            CrmLink.connection_id == target.connection_id,
            CrmLink.kind == "contact",
            Contact.merged_into_id.is_(None),
        )
    )
    with db.reading() as session:
        merged = [
            (hub_id, crm_id)
            for hub_id, crm_id in session.execute(
                select(CrmLink.hub_id, CrmLink.crm_id)
                .join(Contact, Contact.id == CrmLink.hub_id)
                .where(
                    CrmLink.connection_id == target.connection_id,
                    CrmLink.kind == "contact",
                    Contact.merged_into_id.is_not(None),
                )
            )
        ]
        kept = set(session.scalars(live.where(CrmLink.crm_id.in_([c for _, c in merged]))))
    unlink = [(hub_id, crm_id) for hub_id, crm_id in merged if crm_id in kept]
    gone = [(hub_id, crm_id) for hub_id, crm_id in merged if crm_id not in kept]
    if unlink:
        with db.transaction() as session:
            for hub_id, _ in unlink:
                session.execute(
                    delete(CrmLink).where(
                        CrmLink.connection_id == target.connection_id,
                        CrmLink.kind == "contact",
                        CrmLink.hub_id == hub_id,
                    )
                )
    if not gone or down is not None:
        return down
    crm_ids = [crm_id for _, crm_id in gone]
    sent = _in_batches(target, log, crm_ids, lambda b: target.connector.delete("contact", b), sleep)
    with db.transaction() as session:
        for (hub_id, crm_id), result in zip(gone, sent.results, strict=False):
            if result.outcome != "deleted":
                log.record(session, hub_id, "failed", crm_id=crm_id, error=result.error)
                continue
            session.execute(
                delete(CrmLink).where(
                    CrmLink.connection_id == target.connection_id,
                    CrmLink.kind == "contact",
                    CrmLink.hub_id == hub_id,
                )
            )
            log.record(session, hub_id, "deleted", crm_id=crm_id)
    return sent.down


def _finish(db: Database, log: RunLog, down: str | None) -> SyncRun:
    if down is not None:
        log.detail = (
            f"CRM unavailable: {down}; the rows are in the failed-row index for the next run."
        )
    return finish_run(db, log, status="failed" if down is not None else None)


def _push_chunk(
    db: Database,
    target: Target,
    log: RunLog,
    kind: ObjectKind,
    chunk: list[uuid.UUID],
    retry: set[uuid.UUID],
    down: str | None,
    values_of: Values,
    send: Send,
    absent: str,
) -> str | None:
    """Push one chunk; returns why the CRM is unusable for the rest of the run, if it is."""
    with db.reading() as session:
        values = values_of(session, chunk)
        links = links_of(session, target, kind, chunk)
    planned, unchanged = _plan(getattr(target.mapping, kind), values, links, retry)
    sent = send(planned, links, log) if down is None and planned else Sent([], down)
    written = planned[: len(sent.results)]
    with db.transaction() as session:
        for hub_id in chunk:
            if hub_id not in values:
                log.record(session, hub_id, "unchanged", error=absent)
        for hub_id in unchanged:
            log.record(session, hub_id, "unchanged", crm_id=links[hub_id].crm_id)
        known = {
            link.hub_id: link
            for link in session.scalars(
                select(CrmLink).where(
                    CrmLink.connection_id == target.connection_id,
                    CrmLink.kind == kind,
                    CrmLink.hub_id.in_([item.hub_id for item in written]),
                )
            )
        }
        for item, result in zip(written, sent.results, strict=True):
            if result.outcome == "failed":
                log.record(session, item.hub_id, "failed", error=result.error)
                continue
            remember(session, target, kind, item.hub_id, result, item.state, known)
            log.record(session, item.hub_id, result.outcome, crm_id=result.crm_id)
        for item in planned[len(written) :]:
            log.record(session, item.hub_id, "failed", error=f"CRM unavailable: {sent.down}")
    return sent.down


def _deal_values(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    found = session.scalars(select(Opportunity).where(Opportunity.id.in_(ids)))
    return {o.id: deal_values(session, o) for o in found}


def _linked_deals(
    session: Session,
    target: Target,
    retry: set[uuid.UUID],
    *,
    full: bool,
    only: Collection[uuid.UUID] | None,
) -> list[uuid.UUID]:
    """The linked deals of the run, failed rows first: the queued ones, all, or those whose
    opportunity or attribution changed since the last deal push began."""
    query = (
        select(CrmLink.hub_id)
        .join(Opportunity, Opportunity.id == CrmLink.hub_id)
        .outerjoin(DealAttribution, DealAttribution.opportunity_id == Opportunity.id)
        .where(CrmLink.connection_id == target.connection_id, CrmLink.kind == "deal")
        .order_by(Opportunity.created_at, Opportunity.id)
    )
    if only is not None:
        query = query.where(CrmLink.hub_id.in_(list(only)))
    elif not full:
        since = last_start(
            session, connection_id=target.connection_id, direction="push", kind="deal"
        )
        if since is not None:
            query = query.where(
                or_(Opportunity.updated_at >= since, DealAttribution.computed_at >= since)
            )
    return list(dict.fromkeys([*sorted(retry), *session.scalars(query)]))


def _candidates(
    session: Session,
    target: Target,
    retry: set[uuid.UUID],
    *,
    full: bool,
    only: Collection[uuid.UUID] | None,
) -> list[uuid.UUID]:
    """The run's contacts, failed rows first: the queued ones, every lead, or the leads
    changed (profile, lead record or score) since the last run began."""
    if only is not None:
        chosen: list[uuid.UUID] = list(only)
    else:
        query = (
            select(Contact.id)
            .join(Lead, Lead.contact_id == Contact.id)
            .outerjoin(LeadScore, LeadScore.contact_id == Contact.id)
            .where(Contact.merged_into_id.is_(None), Contact.email_sealed.is_not(None))
            .order_by(Contact.created_at, Contact.id)
        )
        since = (
            None
            if full
            else last_start(
                session, connection_id=target.connection_id, direction="push", kind="contact"
            )
        )
        if since is not None:
            query = query.where(
                or_(
                    Contact.updated_at >= since,
                    Lead.updated_at >= since,
                    LeadScore.computed_at >= since,
                )
            )
        chosen = list(session.scalars(query))
    return list(dict.fromkeys([*sorted(retry), *chosen]))


def links_of(
    session: Session, target: Target, kind: ObjectKind, hub_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Synced]:
    found = session.scalars(
        select(CrmLink).where(
            CrmLink.connection_id == target.connection_id,
            CrmLink.kind == kind,
            CrmLink.hub_id.in_(hub_ids),
        )
    )
    return {
        link.hub_id: Synced(link.crm_id, agreed(target.pii, link), link.crm_modified_at)
        for link in found
    }


def _plan(
    object_map: ObjectMap,
    values: dict[uuid.UUID, dict[str, Any]],
    links: dict[uuid.UUID, Synced],
    retry: set[uuid.UUID],
) -> tuple[list[Planned], list[uuid.UUID]]:
    """Split the chunk into rows to write and contacts whose pushed fields already match
    what the CRM last got; a contact without the sync key's value cannot be matched and
    is left out. A linked contact sends only the fields that changed since the CRM last
    agreed (and the key): a field edited in the CRM meanwhile is not overwritten before the
    pull reads it. A failed row is always written whole: its link may say the CRM holds
    what it does not (reconciliation found it differing)."""
    planned: list[Planned] = []
    unchanged: list[uuid.UUID] = []
    ours = [n for n, f in object_map.fields.items() if f.owner in PUSHED_BY_HUB]
    for hub_id, hub in values.items():
        if hub.get(object_map.key) is None:
            continue
        state = {n: v for n, v in synced_state(object_map, hub).items() if n in ours}
        link = links.get(hub_id)
        changed = {n for n in ours if link is None or state.get(n) != link.pushed.get(n)}
        if not changed and hub_id not in retry:
            unchanged.append(hub_id)
            continue
        if link is not None and hub_id not in retry:
            hub = {n: v for n, v in hub.items() if n in changed or n == object_map.key}
        planned.append(Planned(hub_id, crm_row(object_map, hub), state))
    return planned, unchanged


def _write_mode(object_map: ObjectMap) -> WriteMode:
    """``mirror`` writes as ``upsert`` (its deletions are a separate call)."""
    return "upsert" if object_map.mode is Mode.MIRROR else object_map.mode.value  # type: ignore[return-value]


@dataclass(frozen=True)
class Sent:
    """The results of the rows written, in order, and why the rest were not, if they were
    not (the CRM went down or its limit did not lift)."""

    results: list[RowResult]
    down: str | None = None


def _in_batches(
    target: Target,
    log: RunLog,
    rows: Sequence[Row],
    write: Callable[[list[Row]], list[RowResult]],
    sleep: Sleep,
) -> Sent:
    """Write in the vendor's batch size; a rate-limited batch waits and goes again. When
    the CRM fails, the batches it took keep their results: only the rest fail."""
    results: list[RowResult] = []
    size = target.connector.batch_size
    for batch in (list(rows[start : start + size]) for start in range(0, len(rows), size)):
        pauses = 0
        while True:
            try:
                results += write(batch)
                break
            except RateLimited as exc:
                pauses += 1
                if pauses > MAX_PAUSES:
                    return Sent(results, str(exc))
                log.paused_seconds += exc.retry_after
                sleep(exc.retry_after)
            except ConnectorError as exc:
                return Sent(results, str(exc))
    return Sent(results)


def remember(
    session: Session,
    target: Target,
    kind: ObjectKind,
    hub_id: uuid.UUID,
    result: RowResult,
    state: dict[str, Any],
    known: dict[uuid.UUID, CrmLink] | None = None,
) -> CrmLink:
    """Keep what the CRM now holds for ``hub_id``: its id, the written values (the next
    merge's common ancestor) and the vendor's time of the write. ``known``: the links of a
    whole chunk, read at once by the caller (absent there: no link yet)."""
    link = (
        known.get(hub_id)
        if known is not None
        else session.scalar(
            select(CrmLink).where(
                CrmLink.connection_id == target.connection_id,
                CrmLink.kind == kind,
                CrmLink.hub_id == hub_id,
            )
        )
    )
    if link is None:
        link = CrmLink(
            connection_id=target.connection_id,
            kind=kind,
            hub_id=hub_id,
            crm_id=result.crm_id or "",
            pushed={},
        )
        session.add(link)
    link.crm_id = result.crm_id or link.crm_id
    agree(target.pii, link, state)
    link.crm_modified_at = result.modified_at or link.crm_modified_at
    link.synced_at = utcnow()
    return link
