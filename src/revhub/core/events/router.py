"""Admin endpoints: consumers and their lag, dead letters (list, inspect, replay, discard)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from revhub.core.auth.scopes import ADMIN
from revhub.core.events import schemas
from revhub.core.events import service as events
from revhub.core.http import DbSession, hub_of, require
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, problems
from revhub.core.schemas import Page

router = APIRouter(
    prefix="/api/v1", tags=["events"], responses=PROTECTED, dependencies=[require(ADMIN)]
)


@router.get("/events/consumers", response_model=list[schemas.ConsumerStatus])
def list_consumers(request: Request, session: DbSession) -> list[schemas.ConsumerStatus]:
    """Every registered consumer, whether it has a handler yet, and how far behind it is."""
    hub = hub_of(request)
    return events.consumer_statuses(session, consumers=hub.consumers, bus=hub.bus)


@router.get("/dead-letters", response_model=Page[schemas.DeadLetter])
def list_dead_letters(
    session: DbSession,
    status: events.Status | None = events.Status.OPEN,
    consumer: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
) -> Page[schemas.DeadLetter]:
    """Dead letters, newest first (open ones unless ``status`` says otherwise)."""
    after = cursor_field(cursor, "after", uuid.UUID)
    letters = events.list_dead_letters(
        session, status=status, consumer=consumer, after=after, limit=limit
    )
    next_cursor = next_after(letters, limit)
    return Page(
        items=[schemas.DeadLetter.model_validate(d) for d in letters], next_cursor=next_cursor
    )


@router.get(
    "/dead-letters/{dead_letter_id}", response_model=schemas.DeadLetter, responses=problems(404)
)
def get_dead_letter(dead_letter_id: uuid.UUID, session: DbSession) -> schemas.DeadLetter:
    """One dead letter with its event and last error."""
    letter = events.get_dead_letter(session, dead_letter_id=dead_letter_id)
    return schemas.DeadLetter.model_validate(letter)


@router.post(
    "/dead-letters/{dead_letter_id}/replay",
    response_model=schemas.DeadLetter,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(404, 409),
)
def replay_dead_letter(dead_letter_id: uuid.UUID, session: DbSession) -> schemas.DeadLetter:
    """Ask a worker to apply the event again (status ``replaying``, then ``replayed`` or back
    to ``open`` with the new error)."""
    letter = events.request_replay(session, dead_letter_id=dead_letter_id)
    return schemas.DeadLetter.model_validate(letter)


@router.post(
    "/dead-letters/{dead_letter_id}/discard",
    response_model=schemas.DeadLetter,
    responses=problems(404, 409),
)
def discard_dead_letter(dead_letter_id: uuid.UUID, session: DbSession) -> schemas.DeadLetter:
    """Give up on a dead letter; it stays listed as ``discarded``."""
    letter = events.discard(session, dead_letter_id=dead_letter_id)
    return schemas.DeadLetter.model_validate(letter)
