"""The scheduler tick every worker runs (a chore, once a second).

Rules, and why:

* **Once, however many workers.** The firing unit is (job, scheduled time). Each worker
  that sees a time due inserts the ``job_run`` row for it; the unique pair lets one insert
  win, and only that worker runs the job (``models.JobRun``).
* **No catch-up storm.** Only a job's *most recent* due time is ever fired: a worker that was
  down for a week runs a daily job once when it comes back, not seven times.
* **No surprise runs at start.** A worker fires a due time only if it falls within
  ``GRACE`` (60 s) before the worker started, or after the job's last scheduled run — so a
  new installation does not fire last month's report the moment it starts, while a run
  missed during a restart (the 02:00 sync during a 01:59 to 02:05 deploy) is made up once.
* Jobs without a handler yet are not fired and leave no rows (``revhub jobs list`` shows
  them as "no handler yet").
* A worker runs the jobs it wins one at a time; several workers spread them. Runs asked for
  by hand (``queued``) are picked up on the same tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError

from revhub.core.db import Database, utcnow
from revhub.core.jobs import service
from revhub.core.jobs.models import JobRun
from revhub.core.jobs.registry import Job, JobRegistry
from revhub.core.jobs.schedule import latest_due

GRACE = timedelta(seconds=60)
TICK_SECONDS = 1.0

log = structlog.get_logger("revhub.scheduler")


@dataclass
class Scheduler:
    db: Database
    registry: JobRegistry
    worker: str
    started_at: datetime = field(default_factory=utcnow)
    _tried: dict[str, datetime] = field(default_factory=dict)
    _floors: dict[str, datetime] | None = None

    def tick(self, now: datetime | None = None) -> list[JobRun]:
        """Fire what is due, then carry out queued runs; the runs this worker finished."""
        now = now or utcnow()
        finished = [run for job, due in self._due(now) if (run := self._fire(job, due, now))]
        finished += service.run_queued(self.db, registry=self.registry, worker=self.worker, now=now)
        return finished

    def _due(self, now: datetime) -> Iterator[tuple[Job, datetime]]:
        floors = self._floors_once()
        for job in self.registry.scheduled():
            assert job.schedule is not None
            due = latest_due(job.schedule, now=now)
            if due != self._tried.get(job.name) and due >= floors[job.name]:
                yield job, due

    def _floors_once(self) -> dict[str, datetime]:
        """The earliest time each job may fire for, fixed at this worker's first tick."""
        if self._floors is None:
            with self.db.transaction() as session:
                last = service.last_scheduled(session)
            start = self.started_at - GRACE
            self._floors = {
                job.name: min(start, last[job.name] + timedelta(microseconds=1))
                if job.name in last
                else start
                for job in self.registry.scheduled()
            }
        return self._floors

    def _fire(self, job: Job, due: datetime, now: datetime) -> JobRun | None:
        try:
            run = service.start_run(
                self.db,
                job=job,
                trigger=service.SCHEDULE_TRIGGER,
                worker=self.worker,
                now=now,
                scheduled_for=due,
            )
        except IntegrityError:
            self._tried[job.name] = due
            log.debug("job_taken", job=job.name, scheduled_for=due.isoformat())
            return None
        self._tried[job.name] = due
        log.info("job_fired", job=job.name, scheduled_for=due.isoformat(), worker=self.worker)
        return service.execute(self.db, job=job, run=run)
