"""Sales team routes: territories, reps (deactivating one reassigns their leads), the MQL
notifications the alert consumer writes, and the fuzzy duplicates waiting for review."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from revhub.core.auth.scopes import read, write
from revhub.core.db import utcnow
from revhub.core.http import DbSession, require
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, problems
from revhub.core.schemas import Page
from revhub.sales import assignment, team
from revhub.sales import schemas as s

router = APIRouter(prefix="/api/v1/integrations/sales", tags=["sales"], responses=PROTECTED)
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
READ = require(read("sales"))
WRITE = require(write("sales"))


@router.post(
    "/territories",
    status_code=status.HTTP_201_CREATED,
    response_model=s.Territory,
    responses=problems(409),
    dependencies=[WRITE],
)
def create_territory(body: s.TerritoryCreate, session: DbSession) -> s.Territory:
    """A territory: countries, regions (NA, LATAM, EMEA, APAC), industries, company size."""
    return s.Territory.model_validate(assignment.create_territory(session, territory_in=body))


@router.patch(
    "/territories/{territory_id}",
    response_model=s.Territory,
    responses=problems(404, 409),
    dependencies=[WRITE],
)
def update_territory(
    territory_id: uuid.UUID, body: s.TerritoryUpdate, session: DbSession
) -> s.Territory:
    """Change a territory's rules; new leads follow them, assigned leads keep their owner."""
    found = assignment.update_territory(session, territory_id=territory_id, territory_in=body)
    return s.Territory.model_validate(found)


@router.get("/territories", response_model=list[s.Territory], dependencies=[READ])
def list_territories(session: DbSession) -> list[s.Territory]:
    """Territories in the order assignment tries them (priority, then name)."""
    return [s.Territory.model_validate(t) for t in assignment.list_territories(session)]


@router.post(
    "/reps",
    status_code=status.HTTP_201_CREATED,
    response_model=s.Rep,
    responses=problems(409),
    dependencies=[WRITE],
)
def create_rep(body: s.RepCreate, session: DbSession) -> s.Rep:
    """A sales rep in a territory; ``capacity`` weights their share of the round-robin."""
    return s.Rep.model_validate(assignment.create_rep(session, rep_in=body))


@router.get("/reps", response_model=list[s.Rep], dependencies=[READ])
def list_reps(session: DbSession) -> list[s.Rep]:
    return [s.Rep.model_validate(r) for r in assignment.list_reps(session)]


@router.patch(
    "/reps/{rep_id}", response_model=s.RepChange, responses=problems(404), dependencies=[WRITE]
)
def update_rep(rep_id: uuid.UUID, body: s.RepUpdate, session: DbSession) -> s.RepChange:
    """Change capacity or territory, or deactivate (``active: false``): a rep who leaves a
    territory or goes inactive has their leads assigned again by the usual rules."""
    rep, moved = assignment.update_rep(session, rep_id=rep_id, rep_in=body, now=utcnow())
    return s.RepChange(rep=s.Rep.model_validate(rep), reassigned_leads=moved)


@router.get("/notifications", response_model=Page[s.Notification], dependencies=[READ])
def list_notifications(
    session: DbSession,
    limit: Limit = 100,
    cursor: str | None = None,
    rep_id: uuid.UUID | None = None,
) -> Page[s.Notification]:
    """Sales notifications (new MQLs), newest first; ``rep_id`` shows one rep's."""
    after = cursor_field(cursor, "after", uuid.UUID)
    rows = team.list_notifications(session, after=after, limit=limit, rep_id=rep_id)
    return Page(
        items=[s.Notification.model_validate(n) for n in rows], next_cursor=next_after(rows, limit)
    )


@router.get("/duplicates", response_model=Page[s.DuplicateReviewOut], dependencies=[READ])
def list_duplicates(
    session: DbSession,
    limit: Limit = 100,
    cursor: str | None = None,
    review_status: Annotated[
        Literal["open", "merged", "dismissed"], Query(alias="status")
    ] = "open",
) -> Page[s.DuplicateReviewOut]:
    """Likely duplicates (same company, similar name, different e-mail) for a person to decide."""
    after = cursor_field(cursor, "after", uuid.UUID)
    rows = team.list_duplicates(session, after=after, limit=limit, status=review_status)
    return Page(
        items=[s.DuplicateReviewOut.model_validate(d) for d in rows],
        next_cursor=next_after(rows, limit),
    )


@router.post(
    "/duplicates/{review_id}/{decision}",
    response_model=s.DuplicateReviewOut,
    responses=problems(404, 409),
    dependencies=[WRITE],
)
def decide_duplicate(
    review_id: uuid.UUID, decision: Literal["merge", "dismiss"], session: DbSession
) -> s.DuplicateReviewOut:
    """Merge the two profiles (the older survives) or dismiss the match."""
    return s.DuplicateReviewOut.model_validate(
        team.decide_duplicate(session, review_id=review_id, decision=decision)
    )
