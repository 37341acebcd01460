"""The scheduler tick and the run lifecycle, against the configured database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.core.db import Database
from revhub.core.jobs import service as jobs
from revhub.core.jobs.models import JobRun
from revhub.core.jobs.registry import Job, JobContext, JobRegistry
from revhub.core.jobs.scheduler import GRACE, Scheduler
from revhub.core.observability import REGISTRY
from tests.core.jobs import plugin

FIRE = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)  # a time `*/5 * * * *` fires at


def _runs(db: Database, job: str) -> list[JobRun]:
    with db.transaction() as session:
        return [*session.scalars(select(JobRun).where(JobRun.job == job))]


def _scheduler(db: Database, registry: JobRegistry, name: str, **kw: datetime) -> Scheduler:
    return Scheduler(db=db, registry=registry, worker=name, started_at=kw.get("started", FIRE))


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_three_workers_ticking_the_same_instant_fire_the_job_once(
    db: Database, registry: JobRegistry
) -> None:
    calls: list[str] = []

    def count(session: Session, context: JobContext) -> int:
        calls.append(context.job)
        return 7

    registry.register(Job("only_once", "*/5 * * * *", handle=count))
    workers = [_scheduler(db, registry, f"worker-{i}") for i in range(3)]
    finished = [run for w in workers for run in w.tick(FIRE + timedelta(seconds=1))]
    assert calls == ["only_once"]
    assert [(r.job, r.status, r.rows_processed) for r in finished if r.job == "only_once"] == [
        ("only_once", "succeeded", 7)
    ]
    (run,) = _runs(db, "only_once")
    assert run.scheduled_for == FIRE and run.trigger == "schedule" and run.worker == "worker-0"
    assert run.started_at is not None and run.finished_at is not None
    for w in workers:  # the same due time again: nobody fires it twice
        assert w.tick(FIRE + timedelta(seconds=30)) == []
    assert len(_runs(db, "only_once")) == 1


def test_the_next_due_time_fires_again(db: Database, registry: JobRegistry) -> None:
    scheduler = _scheduler(db, registry, "w")
    scheduler.tick(FIRE)
    scheduler.tick(FIRE + timedelta(minutes=5))
    times = sorted(r.scheduled_for for r in _runs(db, plugin.COUNTING) if r.scheduled_for)
    assert times == [FIRE, FIRE + timedelta(minutes=5)]


def test_jobs_without_a_handler_are_never_fired_nor_recorded(
    db: Database, registry: JobRegistry
) -> None:
    monday = datetime(2026, 3, 2, 5, tzinfo=UTC)  # first Monday 05:00: executive_reporting
    registry.reschedule(plugin.COUNTING, None)
    _scheduler(db, registry, "w", started=monday).tick(monday)
    with db.transaction() as session:
        assert session.scalars(select(JobRun.job)).all() == []


def test_a_new_worker_does_not_fire_times_long_before_it_started(
    db: Database, registry: JobRegistry
) -> None:
    started = FIRE + GRACE + timedelta(seconds=1)
    assert _scheduler(db, registry, "late", started=started).tick(started) == []
    within = FIRE + GRACE - timedelta(seconds=1)
    assert len(_scheduler(db, registry, "prompt", started=within).tick(within)) == 1


def test_after_downtime_only_the_latest_missed_time_is_made_up(
    db: Database, registry: JobRegistry
) -> None:
    week_ago = FIRE - timedelta(days=7)
    _scheduler(db, registry, "before", started=week_ago).tick(week_ago)
    back = FIRE + timedelta(minutes=2)  # ~2,000 due times missed since
    finished = _scheduler(db, registry, "after", started=back).tick(back)
    assert [(r.job, r.scheduled_for) for r in finished] == [(plugin.COUNTING, FIRE)]
    assert len(_runs(db, plugin.COUNTING)) == 2


def test_a_failing_job_ends_failed_with_its_error(db: Database, registry: JobRegistry) -> None:
    before = _metric("revhub_job_runs_total", job=plugin.FAILING, status="failed")
    registry.reschedule(plugin.FAILING, "*/5 * * * *")
    registry.reschedule(plugin.COUNTING, None)
    (run,) = _scheduler(db, registry, "w").tick(FIRE)
    assert run.status == "failed" and run.rows_processed is None
    assert run.error == "RuntimeError: the warehouse is unreachable"
    assert run.finished_at is not None and not run.stale
    stored = {r.job: r for r in _runs(db, plugin.FAILING)}[plugin.FAILING]
    assert stored.status == "failed" and stored.error == run.error
    assert _metric("revhub_job_runs_total", job=plugin.FAILING, status="failed") == before + 1
    assert _metric("revhub_job_duration_seconds_count", job=plugin.FAILING, status="failed") >= 1


def test_a_failed_job_rolls_its_changes_back(db: Database, registry: JobRegistry) -> None:
    def half_done(session: Session, _context: JobContext) -> int:
        session.add(JobRun(job="marker", trigger="test", status="succeeded"))
        session.flush()
        raise ValueError("half-way")

    registry.register(Job("half_done", None, handle=half_done))
    run = jobs.run_by_hand(db, registry=registry, name="half_done", actor="t", worker="w")
    assert run.status == "failed" and "half-way" in (run.error or "")
    assert _runs(db, "marker") == []


def test_a_run_asked_for_by_hand_is_queued_then_carried_out_by_a_worker(
    db: Database, registry: JobRegistry
) -> None:
    with db.transaction() as session:
        queued = jobs.request_run(session, registry=registry, name=plugin.COUNTING, actor="ops")
    assert queued.status == "queued" and queued.trigger == "manual:ops"
    with db.transaction() as session, pytest.raises(jobs.Conflict, match="already queued"):
        jobs.request_run(session, registry=registry, name=plugin.COUNTING, actor="ops")
    now = datetime(2026, 3, 2, 10, 7, tzinfo=UTC)  # 10:05 is before the workers' start
    workers = [_scheduler(db, registry, f"w{i}", started=now) for i in range(2)]
    finished = [r for w in workers for r in w.tick(now)]
    assert [(r.id, r.status, r.rows_processed, r.worker) for r in finished] == [
        (queued.id, "succeeded", 3, "w0")
    ]


def test_running_by_hand_is_refused_for_unknown_jobs_and_jobs_without_a_handler(
    db: Database, registry: JobRegistry
) -> None:
    with pytest.raises(jobs.NoHandlerYet, match=r"no handler yet.*crm domain"):
        jobs.run_by_hand(db, registry=registry, name="crm_contact_sync", actor="t", worker="w")
    with pytest.raises(jobs.UnknownJob):
        jobs.run_by_hand(db, registry=registry, name="nope", actor="t", worker="w")
    with db.transaction() as session, pytest.raises(jobs.NoHandlerYet):
        jobs.request_run(session, registry=registry, name="crm_contact_sync", actor="t")
    with db.transaction() as session:
        assert session.scalars(select(JobRun.job)).all() == []


def test_a_queued_run_whose_handler_this_worker_lacks_fails_with_the_reason(
    db: Database, registry: JobRegistry
) -> None:
    with db.transaction() as session:
        jobs.request_run(session, registry=registry, name=plugin.COUNTING, actor="ops")
    bare = JobRegistry()
    (run,) = _scheduler(db, bare, "old-worker").tick(FIRE)
    assert run.status == "failed" and "old-worker has no handler" in (run.error or "")


def test_progress_reaches_the_callback(db: Database, registry: JobRegistry) -> None:
    seen: list[tuple[int, int | None]] = []
    run = jobs.run_by_hand(
        db,
        registry=registry,
        name=plugin.COUNTING,
        actor="cli:ops",
        worker="cli",
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert run.status == "succeeded" and run.trigger == "manual:cli:ops"
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_a_run_left_running_for_over_an_hour_is_shown_stale(
    db: Database, registry: JobRegistry
) -> None:
    job = registry.jobs[plugin.COUNTING]
    old = datetime.now(UTC) - timedelta(hours=2)
    run = jobs.start_run(db, job=job, trigger="schedule", worker="died", now=old)
    fresh = jobs.start_run(db, job=job, trigger="schedule", worker="alive", now=datetime.now(UTC))
    assert run.stale and not fresh.stale


def test_listing_shows_schedule_next_time_handler_status_and_last_run(
    session: Session, db: Database, registry: JobRegistry
) -> None:
    jobs.run_by_hand(db, registry=registry, name=plugin.COUNTING, actor="t", worker="w")
    views = {v.job.name: v for v in jobs.list_jobs(session, registry=registry, now=FIRE)}
    assert views["crm_contact_sync"].status == "no handler yet"
    assert views["crm_contact_sync"].next_run_at is None
    counting = views[plugin.COUNTING]
    assert counting.status == "active" and counting.next_run_at == FIRE + timedelta(minutes=5)
    assert counting.last_run is not None and counting.last_run.rows_processed == 3
    assert views[plugin.FAILING].next_run_at is None  # no schedule: only run by hand
