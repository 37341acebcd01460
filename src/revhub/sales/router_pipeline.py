"""Opportunities and the performance report (seed 000 ``GET …/sales/performance``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from revhub.core.auth.scopes import read, write
from revhub.core.db import utcnow
from revhub.core.http import DbSession, require
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, csv_response, problems, wants_csv, with_csv
from revhub.core.schemas import Page, Timestamp
from revhub.sales import opportunities, performance
from revhub.sales import schemas as s

router = APIRouter(prefix="/api/v1/integrations/sales", tags=["sales"], responses=PROTECTED)
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
READ = require(read("sales"))
WRITE = require(write("sales"))


@router.post(
    "/opportunities",
    status_code=status.HTTP_201_CREATED,
    response_model=s.Opportunity,
    responses=problems(409),
    dependencies=[WRITE],
)
def create_opportunity(
    body: s.OpportunityCreate, session: DbSession, request: Request
) -> s.Opportunity:
    """A deal on an account (by id or domain); its primary contact becomes an opportunity,
    and a customer when it is won."""
    found = opportunities.create(session, opportunity_in=body)
    request.state.resource_id = str(found.id)
    return s.Opportunity.model_validate(found)


@router.get("/opportunities", response_model=Page[s.Opportunity], dependencies=[READ])
def list_opportunities(
    session: DbSession,
    limit: Limit = 100,
    cursor: str | None = None,
    account_id: uuid.UUID | None = None,
) -> Page[s.Opportunity]:
    after = cursor_field(cursor, "after", uuid.UUID)
    rows = opportunities.list(session, after=after, limit=limit, account_id=account_id)
    return Page(
        items=[s.Opportunity.model_validate(o) for o in rows], next_cursor=next_after(rows, limit)
    )


@router.get(
    "/opportunities/{opportunity_id}",
    response_model=s.Opportunity,
    responses=problems(404),
    dependencies=[READ],
)
def get_opportunity(opportunity_id: uuid.UUID, session: DbSession) -> s.Opportunity:
    return s.Opportunity.model_validate(opportunities.get(session, opportunity_id=opportunity_id))


@router.patch(
    "/opportunities/{opportunity_id}",
    response_model=s.Opportunity,
    responses=problems(404),
    dependencies=[WRITE],
)
def update_opportunity(
    opportunity_id: uuid.UUID, body: s.OpportunityUpdate, session: DbSession
) -> s.Opportunity:
    """Change a deal (stage, amount, close); winning it makes the contact a customer."""
    found = opportunities.update(session, opportunity_id=opportunity_id, opportunity_in=body)
    return s.Opportunity.model_validate(found)


@router.get(
    "/performance",
    response_model=s.Performance,
    responses=with_csv("The report; `Accept: text/csv` gives flat rows with a `section` column"),
    dependencies=[READ],
)
def get_performance(
    session: DbSession,
    request: Request,
    start: Annotated[
        Timestamp | None, Query(description="Inclusive; default end - 365 days")
    ] = None,
    end: Annotated[Timestamp | None, Query(description="Exclusive; default now")] = None,
    campaign_id: uuid.UUID | None = None,
    channel: s.Channel | None = None,
    granularity: Literal["month", "week"] = "month",
) -> s.Performance | Response:
    """Marketing-sourced and -influenced pipeline, lead velocity (MQLs per period and their
    growth), stage conversion and median time in stage, lead quality by source — for a
    period, optionally one campaign or channel. The README states each rule."""
    query = performance.period_query(
        start=start,
        end=end,
        now=utcnow(),
        campaign_id=campaign_id,
        channel=channel.value if channel else None,
        granularity=granularity,
    )
    report = performance.performance(session, query)
    if wants_csv(request):
        rows = performance.csv_rows(report)
        return csv_response(rows, performance.CSV_COLUMNS, "sales-performance.csv")
    return s.Performance.model_validate(report)
