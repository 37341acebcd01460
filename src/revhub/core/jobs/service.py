"""Job use cases: describe jobs, list their runs, run one by hand, carry a run out.

A run is three transactions (the entry point's pattern, DESIGN.md §9.1): its row is
committed as ``running`` (so it shows, and so a scheduled run is claimed once), the handler
runs in a transaction of its own (all or nothing), and the outcome is committed —
``succeeded`` with the rows processed, or ``failed`` with the error. A run only stays
``running`` if its process dies mid-way; it then changed nothing, and after an hour it is
shown as ``stale`` (see ``JobRun.stale``).

Asking for a run over the API queues it (``queued``, in the request's transaction); a
worker's scheduler tick picks it up. The CLI runs it at once in its own process.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from revhub.core.db import Database, utcnow
from revhub.core.errors import Conflict, RevHubError, describe_error
from revhub.core.jobs.models import JobRun, RunStatus
from revhub.core.jobs.registry import Job, JobContext, JobRegistry, Progress
from revhub.core.jobs.schedule import next_time
from revhub.core.observability import REGISTRY
from revhub.core.pagination import newest_first

log = structlog.get_logger("revhub.jobs")

JOB_RUNS = Counter(
    "revhub_job_runs", "Finished job runs, by job and status.", ["job", "status"], registry=REGISTRY
)
JOB_DURATION = Histogram(
    "revhub_job_duration_seconds",
    "Time a job run took, by job and status.",
    ["job", "status"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600),
)

SCHEDULE_TRIGGER = "schedule"


class UnknownJob(RevHubError):
    def __init__(self, name: str) -> None:
        super().__init__(
            404, "not-found", "Not found", f"No job named {name!r}; GET /api/v1/jobs lists them."
        )


class NoHandlerYet(Conflict):
    def __init__(self, job: Job) -> None:
        super().__init__(
            f"Job {job.name!r} has no handler yet: it arrives with the {job.domain} domain. "
            "Nothing was run."
        )


@dataclass(frozen=True)
class JobView:
    """A job as an admin sees it: schedule, whether and when it fires next, its last run."""

    job: Job
    next_run_at: datetime | None
    last_run: JobRun | None

    @property
    def status(self) -> Literal["active", "no handler yet"]:
        return "active" if self.job.has_handler else "no handler yet"


def get_job(registry: JobRegistry, *, name: str) -> Job:
    job = registry.get(name)
    if job is None:
        raise UnknownJob(name)
    return job


def describe_job(session: Session, *, job: Job, now: datetime) -> JobView:
    """``next_run_at`` is None when the scheduler will not fire it (no handler or schedule)."""
    fires_on = job.schedule if job.has_handler else None
    return JobView(
        job=job,
        next_run_at=next_time(fires_on, after=now) if fires_on else None,
        last_run=session.scalars(
            select(JobRun)
            .where(JobRun.job == job.name)
            .order_by(JobRun.created_at.desc(), JobRun.id.desc())
            .limit(1)
        ).first(),
    )


def list_jobs(session: Session, *, registry: JobRegistry, now: datetime) -> list[JobView]:
    return [
        describe_job(session, job=job, now=now)
        for job in sorted(registry.jobs.values(), key=lambda j: j.name)
    ]


def list_runs(session: Session, *, job: str, after: uuid.UUID | None, limit: int) -> list[JobRun]:
    """A job's runs, newest first; ``after`` is the id the previous page ended on."""
    query = newest_first(session, JobRun, after=after).where(JobRun.job == job)
    return [*session.scalars(query.limit(limit))]


def get_run(session: Session, *, job: str, run_id: uuid.UUID) -> JobRun:
    run = session.get(JobRun, run_id)
    if run is None or run.job != job:
        raise RevHubError(404, "not-found", "Not found", f"No run {run_id} of job {job!r}.")
    return run


def request_run(session: Session, *, registry: JobRegistry, name: str, actor: str) -> JobRun:
    """Queue a run by hand for a worker to carry out; refused when the job has no handler
    yet, or when a run of it is already waiting (a second click adds nothing)."""
    job = runnable(registry, name)
    waiting = session.scalars(
        select(JobRun.id).where(JobRun.job == name, JobRun.status == RunStatus.QUEUED)
    ).first()
    if waiting is not None:
        raise Conflict(f"A run of {name!r} is already queued ({waiting}); a worker starts it.")
    run = JobRun(job=job.name, trigger=f"manual:{actor}", status=RunStatus.QUEUED)
    session.add(run)
    session.flush()
    return run


def run_by_hand(
    db: Database,
    *,
    registry: JobRegistry,
    name: str,
    actor: str,
    worker: str,
    on_progress: Progress | None = None,
) -> JobRun:
    """Run a job now, in this process (the CLI); the finished run."""
    job = runnable(registry, name)
    run = start_run(db, job=job, trigger=f"manual:{actor}", worker=worker, now=utcnow())
    return execute(db, job=job, run=run, on_progress=on_progress)


def runnable(registry: JobRegistry, name: str) -> Job:
    """The job ``name``, if it can be run: 404 when unknown, 409 when it has no handler yet."""
    job = get_job(registry, name=name)
    if not job.has_handler:
        raise NoHandlerYet(job)
    return job


def start_run(
    db: Database,
    *,
    job: Job,
    trigger: str,
    worker: str,
    now: datetime,
    scheduled_for: datetime | None = None,
) -> JobRun:
    """Commit the run's row as ``running``. For a scheduled run this is the claim: a second
    worker inserting the same (job, scheduled_for) gets ``IntegrityError``."""
    run = JobRun(
        job=job.name,
        trigger=trigger,
        scheduled_for=scheduled_for,
        status=RunStatus.RUNNING,
        created_at=now,
        started_at=now,
        worker=worker,
    )
    with db.transaction() as session:
        session.add(run)
    return run


def execute(db: Database, *, job: Job, run: JobRun, on_progress: Progress | None = None) -> JobRun:
    """Run the handler in its own transaction and commit the outcome; the finished run.

    Any exception ends the run as ``failed`` with its text (the job's changes roll back).
    An interruption (Ctrl-C, shutdown) is recorded the same way, then goes on up.
    """
    assert job.handle is not None
    assert run.started_at is not None
    context = JobContext(
        job=job.name,
        run_id=run.id,
        started_at=run.started_at,
        scheduled_for=run.scheduled_for,
        on_progress=on_progress,
    )
    clock = time.perf_counter()
    try:
        with db.transaction() as session:
            rows = job.handle(session, context)
    except Exception as exc:  # a failing job is a failed run, never a crashed worker
        log.exception("job_failed", job=job.name, run_id=str(run.id))
        return _finish(db, run, RunStatus.FAILED, None, describe_error(exc), clock)
    except BaseException as exc:
        _finish(db, run, RunStatus.FAILED, None, f"interrupted ({type(exc).__name__})", clock)
        raise
    return _finish(db, run, RunStatus.SUCCEEDED, rows, None, clock)


def _finish(
    db: Database, run: JobRun, status: RunStatus, rows: int | None, error: str | None, clock: float
) -> JobRun:
    seconds = time.perf_counter() - clock
    with db.transaction() as session:
        finished = session.get_one(JobRun, run.id)
        finished.status = status
        finished.rows_processed = rows
        finished.error = error
        finished.finished_at = utcnow()
    JOB_RUNS.labels(run.job, status).inc()
    JOB_DURATION.labels(run.job, status).observe(seconds)
    log.info("job_finished", job=run.job, run_id=str(run.id), status=status, rows=rows)
    return finished


def claim_queued(db: Database, *, run_id: uuid.UUID, worker: str, now: datetime) -> bool:
    """Move a queued run to ``running`` for ``worker``; False if another worker took it."""
    with db.transaction() as session:
        taken = session.execute(  # type: ignore[attr-defined]
            update(JobRun)
            .where(JobRun.id == run_id, JobRun.status == RunStatus.QUEUED)
            .values(status=RunStatus.RUNNING, started_at=now, worker=worker)
        ).rowcount
    return bool(taken)


def run_queued(
    db: Database, *, registry: JobRegistry, worker: str, now: datetime, limit: int = 10
) -> list[JobRun]:
    """Carry out runs asked for by hand (oldest first) that no other worker has taken."""
    with db.transaction() as session:
        queued = session.execute(
            select(JobRun.id, JobRun.job)
            .where(JobRun.status == RunStatus.QUEUED)
            .order_by(JobRun.created_at)
            .limit(limit)
        ).all()
    finished = []
    for run_id, name in queued:
        if not claim_queued(db, run_id=run_id, worker=worker, now=now):
            continue
        with db.transaction() as session:
            run = session.get_one(JobRun, run_id)
        job = registry.get(name)
        if job is None or job.handle is None:
            reason = f"worker {worker} has no handler for job {name!r}"
            finished.append(_finish(db, run, RunStatus.FAILED, None, reason, time.perf_counter()))
            continue
        finished.append(execute(db, job=job, run=run))
    return finished


def last_scheduled(session: Session) -> dict[str, datetime]:
    """Each job's latest scheduled time that some worker claimed."""
    rows = session.execute(
        select(JobRun.job, func.max(JobRun.scheduled_for))
        .where(JobRun.trigger == SCHEDULE_TRIGGER)
        .group_by(JobRun.job)
    )
    return {job: at for job, at in rows if at is not None}
