"""What a job is, what its handler receives, and the registry the scheduler reads.

A job without a handler is registered by name and schedule so that it shows in
``revhub jobs list`` as "no handler yet": its domain has not landed. Nothing pretends to run
it; when the domain lands it registers the same name with a handler (see ``defaults.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session

Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: told each time a handler reports progress (total may be None)."""


@dataclass
class JobContext:
    """What a handler knows about its run, and how it reports progress.

    ``started_at`` is the handler's "now" (use it, not the clock, for cut-offs);
    ``scheduled_for`` is the schedule time it fires for (None when run by hand).
    """

    job: str
    run_id: uuid.UUID
    started_at: datetime
    scheduled_for: datetime | None = None
    on_progress: Progress | None = None
    expected: int | None = None
    done: int = 0

    def total(self, count: int) -> None:
        """Announce how many rows (or steps) the run will process."""
        self.expected = count
        self._report()

    def advance(self, count: int = 1) -> None:
        """Record ``count`` more rows (or steps) processed."""
        self.done += count
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.expected)


JobHandler = Callable[[Session, JobContext], int]
"""``handle(session, context) -> rows processed``, inside one transaction of its own."""


@dataclass(frozen=True)
class Job:
    """A named batch job: its cron schedule (None: only run by hand) and its handler."""

    name: str
    schedule: str | None
    handle: JobHandler | None = None
    description: str = ""
    domain: str = "core"

    @property
    def has_handler(self) -> bool:
        return self.handle is not None


@dataclass
class JobRegistry:
    jobs: dict[str, Job] = field(default_factory=dict)

    def register(self, job: Job) -> Job:
        """Add or replace a job (a domain replaces its placeholder with the real handler)."""
        self.jobs[job.name] = job
        return job

    def get(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def reschedule(self, name: str, schedule: str | None) -> None:
        self.jobs[name] = replace(self.jobs[name], schedule=schedule)

    def scheduled(self) -> list[Job]:
        """The jobs the scheduler fires: a handler and a schedule."""
        return [j for j in self.jobs.values() if j.handle is not None and j.schedule]
