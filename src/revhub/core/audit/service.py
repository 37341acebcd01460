"""Append to and verify the audit chain (seed 000 "Compliance and Audit": access logging).

Each entry's hash is an HMAC-SHA256, keyed by the audit secret, over the previous entry's
hash and the entry's own fields. A plain hash chain can be recomputed by whoever can edit
the table; a keyed one cannot without the key, so an edited, inserted or deleted row shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from revhub.core.audit.models import GENESIS_HASH, AuditEntry, AuditHead
from revhub.core.audit.schemas import ChainProblem, ChainVerification
from revhub.core.db import PIPELINED_ROWS, insert_rows, pipelined, update_rows

OUTCOMES = ("success", "denied", "failed")


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is sealed into the chain."""

    occurred_at: datetime
    actor: str
    action: str
    resource_type: str
    outcome: str
    actor_id: str | None = None
    role: str | None = None
    resource_id: str | None = None
    request_id: str | None = None
    status_code: int | None = None
    client_ip: str | None = None


def _seal(key: bytes, seq: int, prev_hash: str, fields: dict[str, object]) -> str:
    body = json.dumps({"seq": seq, **fields}, sort_keys=True, default=str, separators=(",", ":"))
    return hmac.new(key, (prev_hash + body).encode(), hashlib.sha256).hexdigest()


def _fields(event: AuditEvent) -> dict[str, object]:
    fields = asdict(event)
    fields["occurred_at"] = event.occurred_at.isoformat()
    return fields


_LIMITS = {
    "actor": 200,
    "actor_id": 64,
    "role": 20,
    "action": 200,
    "resource_type": 64,
    "resource_id": 200,
    "request_id": 128,
    "outcome": 16,
    "client_ip": 64,
}


def _fit(event: AuditEvent) -> AuditEvent:
    """Whatever a caller sent (a 300-character path, a NUL), the entry is still written:
    text is clipped to its column and NULs are dropped, so no request goes unaudited."""
    clipped = {
        name: value.replace("\x00", "")[:limit]
        for name, limit in _LIMITS.items()
        if isinstance(value := getattr(event, name), str)
    }
    return replace(event, **clipped)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Sealed:
    """Where an event went in the chain."""

    seq: int
    prev_hash: str
    hash: str


def record(session: Session, *, event: AuditEvent, key: bytes) -> Sealed:
    """Append ``event`` to the chain inside the caller's transaction."""
    return record_many(session, events=[event], key=key)[0]


def record_many(session: Session, *, events: Sequence[AuditEvent], key: bytes) -> list[Sealed]:
    """Append ``events``, in order, to the chain inside the caller's transaction: the head
    is moved once for all of them (the UPDATE … RETURNING locks it on PostgreSQL until the
    transaction ends; SQLite has one writer anyway), the entries are sealed one after the
    other and written as plain rows. For a group of leads captured together, whose requests
    each keep their own entry, that is three statements rather than three per request, and
    on PostgreSQL the last two go in one pipeline (two round trips). The head is never
    loaded as an object, so its updates skip the session sync."""
    if not events:
        return []
    connection = session.connection()  # Core: no ORM bookkeeping for the head's row
    last_seq, prev_hash = connection.execute(_ADVANCE, {"count": len(events)}).one()
    sealed: list[Sealed] = []
    rows: list[dict[str, object]] = []
    for seq, event in enumerate(map(_fit, events), start=last_seq - len(events) + 1):
        sealed.append(Sealed(seq, prev_hash, _seal(key, seq, prev_hash, _fields(event))))
        rows.append(asdict(sealed[-1]) | asdict(event))
        prev_hash = sealed[-1].hash
    with pipelined(connection, len(rows) <= PIPELINED_ROWS):  # more go by COPY
        insert_rows(session, AuditEntry, rows)
        update_rows(session, AuditHead, [{"id": 1, "last_hash": prev_hash}])
    return sealed


_ADVANCE = (
    update(AuditHead)
    .where(AuditHead.id == 1)
    .values(seq=AuditHead.seq + bindparam("count"))
    .returning(AuditHead.seq, AuditHead.last_hash)
)
"""Built once: every audited request moves the head."""


def list_entries(
    session: Session,
    *,
    before_seq: int | None,
    limit: int,
    actor: str | None = None,
    outcome: str | None = None,
) -> list[AuditEntry]:
    """Newest first; ``before_seq`` is where the previous page ended."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if outcome is not None:
        query = query.where(AuditEntry.outcome == outcome)
    return [*session.scalars(query)]


def _entries_in_order(session: Session) -> Iterator[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000)
    yield from session.scalars(query)


def _event_of(entry: AuditEntry) -> AuditEvent:
    names = AuditEvent.__dataclass_fields__
    return AuditEvent(**{n: getattr(entry, n) for n in names})


def verify(session: Session, *, key: bytes, max_problems: int = 100) -> ChainVerification:
    """Walk the chain from the first entry and report every break found.

    Catches an edited row (its hash no longer matches), a deleted or inserted row (the
    sequence skips or the next ``prev_hash`` does not point at it) and deleted newest rows
    (the head names a later entry than the table holds).
    """
    problems: list[ChainProblem] = []
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for entry in _entries_in_order(session):
        checked += 1
        if entry.seq != expected_seq:
            problems.append(
                ChainProblem(
                    seq=entry.seq, problem=(f"entries {expected_seq}..{entry.seq - 1} are missing")
                )
            )
        if entry.prev_hash != prev_hash:
            problems.append(
                ChainProblem(seq=entry.seq, problem="does not follow the entry before it")
            )
        if _seal(key, entry.seq, entry.prev_hash, _fields(_event_of(entry))) != entry.hash:
            problems.append(
                ChainProblem(seq=entry.seq, problem="content changed after it was written")
            )
        expected_seq, prev_hash = entry.seq + 1, entry.hash
        if len(problems) >= max_problems:
            break
    head = session.get(AuditHead, 1)
    if (
        head is not None
        and len(problems) < max_problems
        and (head.seq != expected_seq - 1 or head.last_hash != prev_hash)
    ):
        problems.append(
            ChainProblem(
                seq=head.seq,
                problem=(
                    f"the chain head names entry {head.seq} "
                    f"but the table ends at {expected_seq - 1}"
                ),
            )
        )
    return ChainVerification(ok=not problems, entries_checked=checked, problems=problems)
