"""Sync runs and what they keep: the row log, the failed-row index and the CSV export.

Every push, pull and reconciliation is a run with a row per record it touched (vendor
conventions, vendor-specs README: "row-level run logs are kept and exportable"). A row that
fails goes to the failed-row index of its connection and is retried by every later run
until it succeeds, when it leaves the index.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from revhub.core.db import Database, get_or_404, utcnow
from revhub.crm.models import FailedRow, SyncRow, SyncRun

EXPORT_COLUMNS = ("run_id", "at", "hub_id", "crm_id", "outcome", "error")


@dataclass
class RunLog:
    """A run as it goes: its rows are written with each batch, its counts at the end."""

    run_id: uuid.UUID
    connection_id: uuid.UUID
    kind: str
    indexes: bool = True
    """Whether rows enter and leave the failed-row index: a push's and a reconciliation's
    do (the index is what the next push sends again); a pull's do not."""
    indexed: set[uuid.UUID] = field(default_factory=set)
    """The hub ids in the failed-row index (read at the start, kept as the run goes): a
    success takes a row out with a DELETE only when it is in."""
    counts: Counter[str] = field(default_factory=Counter)
    paused_seconds: float = 0.0
    detail: str = ""

    def record(
        self,
        session: Session,
        hub_id: uuid.UUID | None,
        outcome: str,
        *,
        crm_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Log one row; a failure enters (or stays in) the failed-row index, a success on
        a hub record takes it out."""
        self.counts[outcome] += 1
        session.add(
            SyncRow(run_id=self.run_id, hub_id=hub_id, crm_id=crm_id, outcome=outcome, error=error)
        )
        if hub_id is None or not self.indexes:
            return
        if outcome == "failed":
            _index_failure(session, self.connection_id, self.kind, hub_id, error or "failed")
            self.indexed.add(hub_id)
        elif hub_id in self.indexed:
            self.indexed.discard(hub_id)
            session.execute(
                delete(FailedRow).where(
                    FailedRow.connection_id == self.connection_id,
                    FailedRow.kind == self.kind,
                    FailedRow.hub_id == hub_id,
                )
            )

    @property
    def status(self) -> str:
        """``succeeded``; ``partial`` when some rows failed; ``failed`` when all did."""
        failed = self.counts["failed"]
        if not failed:
            return "succeeded"
        return "failed" if failed == sum(self.counts.values()) else "partial"


def start_run(
    db: Database, *, connection_id: uuid.UUID, direction: str, kind: str, trigger: str, full: bool
) -> RunLog:
    with db.transaction() as session:
        run = SyncRun(
            connection_id=connection_id, direction=direction, kind=kind, trigger=trigger, full=full
        )
        session.add(run)
        session.flush()
        indexes = direction != "pull"
        indexed = (
            set(failed_ids(session, connection_id=connection_id, kind=kind)) if indexes else set()
        )
        return RunLog(
            run_id=run.id,
            connection_id=connection_id,
            kind=kind,
            indexes=indexes,
            indexed=indexed,
        )


def finish_run(db: Database, log: RunLog, *, status: str | None = None) -> SyncRun:
    with db.transaction() as session:
        run = session.get_one(SyncRun, log.run_id)
        run.status = status or log.status
        run.counts = dict(log.counts)
        run.paused_seconds = round(log.paused_seconds, 3)
        run.detail = log.detail[:2000]
        run.finished_at = utcnow()
        session.flush()
        session.expunge(run)
        return run


def _index_failure(
    session: Session, connection_id: uuid.UUID, kind: str, hub_id: uuid.UUID, error: str
) -> None:
    entry = session.get(FailedRow, (connection_id, kind, hub_id))
    if entry is None:
        session.add(FailedRow(connection_id=connection_id, kind=kind, hub_id=hub_id, error=error))
        return
    entry.attempts += 1
    entry.error = error
    entry.last_failed_at = utcnow()


def failed_ids(session: Session, *, connection_id: uuid.UUID, kind: str) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(FailedRow.hub_id).where(
                FailedRow.connection_id == connection_id, FailedRow.kind == kind
            )
        )
    )


def failed_rows(session: Session, *, connection_id: uuid.UUID) -> Sequence[FailedRow]:
    return session.scalars(
        select(FailedRow)
        .where(FailedRow.connection_id == connection_id)
        .order_by(FailedRow.last_failed_at.desc())
    ).all()


def last_start(
    session: Session, *, connection_id: uuid.UUID, direction: str, kind: str
) -> datetime | None:
    """When the last whole run of this kind that did not fail outright began (an
    incremental push takes what changed since then). Real-time runs push only the queued
    records, so they do not count: a score that decayed meanwhile is still due."""
    return session.scalar(
        select(SyncRun.started_at)
        .where(
            SyncRun.connection_id == connection_id,
            SyncRun.direction == direction,
            SyncRun.kind == kind,
            SyncRun.trigger != "realtime",
            SyncRun.status.in_(("succeeded", "partial")),
        )
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    )


def get_run(session: Session, *, run_id: uuid.UUID) -> SyncRun:
    return get_or_404(session, SyncRun, run_id, label="sync run")


def list_runs(
    session: Session, *, connection_id: uuid.UUID | None, limit: int
) -> Sequence[SyncRun]:
    query = select(SyncRun).order_by(SyncRun.started_at.desc()).limit(limit)
    if connection_id is not None:
        query = query.where(SyncRun.connection_id == connection_id)
    return session.scalars(query).all()


def export_rows(session: Session, *, run_id: uuid.UUID) -> Iterator[str]:
    """The run's row log as CSV, a chunk of lines at a time (a full run has one row per
    record, 50,000 or more)."""
    get_run(session, run_id=run_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    query = select(SyncRow).where(SyncRow.run_id == run_id).order_by(SyncRow.at, SyncRow.id)
    for count, row in enumerate(session.scalars(query.execution_options(yield_per=1000)), 1):
        writer.writerow(
            [
                run_id,
                row.at.isoformat(),
                row.hub_id or "",
                row.crm_id or "",
                row.outcome,
                row.error or "",
            ]
        )
        if count % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
