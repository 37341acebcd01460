"""A ``REVHUB_PLUGINS`` module that registers jobs (and no consumers): one that reports
progress and processes rows, one that always fails."""

from __future__ import annotations

from sqlalchemy.orm import Session

from revhub.core.jobs.registry import Job, JobContext, JobRegistry

COUNTING = "test_counting"
FAILING = "test_failing"


def count_three(_session: Session, context: JobContext) -> int:
    context.total(3)
    for _ in range(3):
        context.advance()
    return 3


def always_fail(_session: Session, _context: JobContext) -> int:
    raise RuntimeError("the warehouse is unreachable")


def register_jobs(registry: JobRegistry) -> None:
    registry.register(Job(COUNTING, "*/5 * * * *", handle=count_three, domain="tests"))
    registry.register(Job(FAILING, None, handle=always_fail, domain="tests"))
