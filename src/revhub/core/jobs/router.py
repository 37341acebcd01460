"""Admin endpoints: the jobs, their schedule and runs, and running one now.

``POST /jobs/{name}/runs`` queues the run (202) in the request's transaction and a worker
carries it out on its next scheduler tick, as dead-letter replays are: a job runs in
transactions of its own, which on SQLite could not start while the request's is open.
Poll ``GET /jobs/{name}/runs/{run_id}`` for the outcome.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from revhub.core.auth.principal import Principal
from revhub.core.auth.scopes import ADMIN
from revhub.core.db import utcnow
from revhub.core.http import DbSession, hub_of, require
from revhub.core.jobs import schemas
from revhub.core.jobs import service as jobs
from revhub.core.jobs.registry import JobRegistry
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, problems
from revhub.core.schemas import Page

router = APIRouter(
    prefix="/api/v1", tags=["jobs"], responses=PROTECTED, dependencies=[require(ADMIN)]
)


def _registry(request: Request) -> JobRegistry:
    return hub_of(request).jobs


Jobs = Annotated[JobRegistry, Depends(_registry)]
JobName = Annotated[str, Path(min_length=1, max_length=100)]


@router.get("/jobs", response_model=list[schemas.Job])
def list_jobs(session: DbSession, registry: Jobs) -> list[schemas.Job]:
    """Every job: schedule (cron, UTC), next run, "no handler yet" or active, last run."""
    views = jobs.list_jobs(session, registry=registry, now=utcnow())
    return [schemas.Job.of(v) for v in views]


@router.get("/jobs/{name}", response_model=schemas.Job, responses=problems(404))
def get_job(name: JobName, session: DbSession, registry: Jobs) -> schemas.Job:
    """One job with its schedule, next run and last run."""
    job = jobs.get_job(registry, name=name)
    return schemas.Job.of(jobs.describe_job(session, job=job, now=utcnow()))


@router.get("/jobs/{name}/runs", response_model=Page[schemas.JobRun], responses=problems(404))
def list_runs(
    name: JobName,
    session: DbSession,
    registry: Jobs,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
) -> Page[schemas.JobRun]:
    """A job's runs, newest first."""
    job = jobs.get_job(registry, name=name)
    after = cursor_field(cursor, "after", uuid.UUID)
    runs = jobs.list_runs(session, job=job.name, after=after, limit=limit)
    next_cursor = next_after(runs, limit)
    return Page(items=[schemas.JobRun.model_validate(r) for r in runs], next_cursor=next_cursor)


@router.get("/jobs/{name}/runs/{run_id}", response_model=schemas.JobRun, responses=problems(404))
def get_run(name: JobName, run_id: uuid.UUID, session: DbSession, registry: Jobs) -> schemas.JobRun:
    """One run: its status, rows processed, error."""
    job = jobs.get_job(registry, name=name)
    return schemas.JobRun.model_validate(jobs.get_run(session, job=job.name, run_id=run_id))


@router.post(
    "/jobs/{name}/runs",
    response_model=schemas.JobRun,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(404, 409),
)
def run_job(
    name: JobName,
    session: DbSession,
    registry: Jobs,
    request: Request,
    principal: Annotated[Principal, require(ADMIN)],
) -> schemas.JobRun:
    """Run the job now: queued here, carried out by a worker within a second or so. 409 when
    the job has no handler yet or a run of it is already queued."""
    run = jobs.request_run(session, registry=registry, name=name, actor=principal.name)
    request.state.resource_id = str(run.id)
    return schemas.JobRun.model_validate(run)
