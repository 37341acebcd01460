"""Job runs: one row per run, scheduled or asked for by hand.

The unique pair (``job``, ``scheduled_for``) is the lease that makes a scheduled run happen
once however many workers tick: each worker inserts the row for a due time, one insert wins
and runs the job, the others get an integrity error and skip it. Manual runs have no
``scheduled_for``; NULLs never collide under a unique constraint (SQLite and PostgreSQL
alike), so any number of them may exist.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from revhub.core.db import Base, new_id, utcnow

STALE_AFTER = timedelta(hours=1)
"""A run still "running" this long after it started most likely lost its process."""


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobRun(Base):
    __tablename__ = "job_run"
    __table_args__ = (
        UniqueConstraint("job", "scheduled_for"),
        Index("ix_job_run_job_created_at", "job", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    job: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(250))
    scheduled_for: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    rows_processed: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))

    @property
    def stale(self) -> bool:
        """Still "running" long after it started: its process probably died. A job runs in
        one transaction, so such a run changed nothing; run the job again by hand."""
        return (
            self.status == RunStatus.RUNNING
            and self.started_at is not None
            and utcnow() - self.started_at > STALE_AFTER
        )
