"""Responses of the job endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from revhub.core.jobs.service import JobView
from revhub.core.schemas import ResponseModel


class JobRun(ResponseModel):
    id: uuid.UUID
    job: str
    trigger: str = Field(description='"schedule", or "manual:<who asked>".')
    status: Literal["queued", "running", "succeeded", "failed"]
    scheduled_for: datetime | None = Field(description="The schedule time; null when manual.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rows_processed: int | None
    error: str | None
    worker: str | None = Field(description="The process that ran it.")
    stale: bool = Field(
        description="Still running an hour after it started: its process probably died, and "
        "since a job commits all or nothing, it changed nothing. Run the job again."
    )


class Job(ResponseModel):
    name: str
    description: str
    domain: str = Field(description="The domain that owns the job.")
    schedule: str | None = Field(description="Cron, UTC; null when only run by hand.")
    status: Literal["active", "no handler yet"] = Field(
        description='"no handler yet": its domain has not landed; it is never fired.'
    )
    next_run_at: datetime | None = Field(description="Null when the scheduler will not fire it.")
    last_run: JobRun | None

    @classmethod
    def of(cls, view: JobView) -> Job:
        return cls(
            name=view.job.name,
            description=view.job.description,
            domain=view.job.domain,
            schedule=view.job.schedule,
            status=view.status,
            next_run_at=view.next_run_at,
            last_run=JobRun.model_validate(view.last_run) if view.last_run else None,
        )
