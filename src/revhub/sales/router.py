"""The sales API (seed 000 "Sales Integration APIs"): leads, touchpoints, campaigns, scores,
reps and territories, opportunities, notifications. Thin: parse, authorise, call a service."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from revhub.contacts.pii import Pii, pii_for
from revhub.core.auth.principal import Principal
from revhub.core.auth.scopes import read, write
from revhub.core.http import (
    DbSession,
    audit_entry,
    hub_of,
    mark_audited,
    request_transaction,
    require,
)
from revhub.core.idempotency import idempotent
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, problems
from revhub.core.schemas import Page
from revhub.sales import qualification, service, touchpoints
from revhub.sales import schemas as s
from revhub.sales.capture_queue import CaptureQueue, queue_of
from revhub.sales.router_pipeline import router as pipeline_router
from revhub.sales.router_team import router as team_router
from revhub.sales.scoring import ScoringModelDocument

router = APIRouter(prefix="/api/v1/integrations/sales", tags=["sales"], responses=PROTECTED)
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Reader = Annotated[Principal, require(read("sales"))]
Writer = Annotated[Principal, require(write("sales"))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retry-safe writes: the same key and body replay the first answer.",
    ),
]
READ = require(read("sales"))
WRITE = require(write("sales"))


def pii_of(request: Request) -> Pii:
    return pii_for(hub_of(request).settings)


def _capture_queue(request: Request) -> CaptureQueue:
    return queue_of(request.app.state, hub_of(request))


def _once(
    request: Request,
    response: Response,
    session: DbSession,
    principal: Principal,
    key: str | None,
    body: BaseModel,
    produce: Callable[[], tuple[BaseModel, int]],
) -> BaseModel | JSONResponse:
    """Answer once per ``Idempotency-Key``; the fingerprint is the body as parsed, with keys
    sorted, so a retry that orders its JSON differently is still the same request."""
    route = getattr(request.scope.get("route"), "path", request.url.path)
    answer = idempotent(
        session,
        key=key,
        credential_id=principal.credential_id,
        route=f"{request.method} {route}",
        body=lambda: json.dumps(body.model_dump(mode="json"), sort_keys=True),
        produce=produce,
    )
    if isinstance(answer, JSONResponse):
        return answer
    model, response.status_code = answer
    return model


@router.post(
    "/leads",
    status_code=status.HTTP_201_CREATED,
    response_model=s.LeadResult,
    responses=problems(409),
)
async def capture_lead(
    body: s.LeadCreate,
    request: Request,
    response: Response,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | JSONResponse:
    """Capture one lead (form submission, e-mail sign-up, webinar registration) through the
    six steps of seed 002; the answer says what each step did."""
    if idempotency_key is None:
        arrived = getattr(request.state, "arrived", None)
        queued = _capture_queue(request).submit(body, audit_entry(request), arrived=arrived)
        result = await asyncio.wrap_future(queued)
        mark_audited(request)
        request.state.resource_id = str(result.lead_id)
        return result
    return await run_in_threadpool(
        _capture_lead_once, request, response, principal, idempotency_key, body
    )


def _capture_lead_once(
    request: Request, response: Response, principal: Principal, key: str, body: s.LeadCreate
) -> BaseModel | JSONResponse:
    """A lead sent with an ``Idempotency-Key``: captured alone, in the request's own
    transaction with its idempotency record, so a retry replays this answer."""
    with request_transaction(request) as session:

        def produce() -> tuple[BaseModel, int]:
            result = service.capture_lead(session, pii_of(request), lead_in=body)
            request.state.resource_id = str(result.lead_id)
            return result, status.HTTP_201_CREATED

        return _once(request, response, session, principal, key, body, produce)


@router.post("/leads/bulk", response_model=s.BulkResult, responses=problems(409))
def capture_leads(
    body: s.LeadBulk,
    session: DbSession,
    request: Request,
    response: Response,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | JSONResponse:
    """Up to 1,000 leads; each is processed alone and reported at its index (201, or 422 with
    the fields to fix). Good items land even when others are refused."""

    def produce() -> tuple[BaseModel, int]:
        return service.capture_leads(session, pii_of(request), items=body.leads), 200

    return _once(request, response, session, principal, idempotency_key, body, produce)


@router.post(
    "/touchpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=s.Touchpoint,
    responses=problems(409),
)
def add_touchpoint(
    body: s.TouchpointCreate,
    session: DbSession,
    request: Request,
    response: Response,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | JSONResponse:
    """Record one touchpoint; the person's score is recomputed. A repeated ``external_id``
    answers 200 with the touchpoint stored the first time."""

    def produce() -> tuple[BaseModel, int]:
        touchpoint, existing = touchpoints.add_touchpoint(session, pii_of(request), tp_in=body)
        code = status.HTTP_200_OK if existing else status.HTTP_201_CREATED
        return touchpoint, code

    return _once(request, response, session, principal, idempotency_key, body, produce)


@router.post("/touchpoints/bulk", response_model=s.TouchpointBulkResult, responses=problems(409))
def add_touchpoints(
    body: s.TouchpointBulk,
    session: DbSession,
    request: Request,
    response: Response,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | JSONResponse:
    """Up to 1,000 touchpoints, each reported at its index; scores are recomputed once per
    person touched."""

    def produce() -> tuple[BaseModel, int]:
        return touchpoints.add_touchpoints(session, pii_of(request), items=body.touchpoints), 200

    return _once(request, response, session, principal, idempotency_key, body, produce)


@router.post(
    "/campaigns",
    status_code=status.HTTP_201_CREATED,
    response_model=s.Campaign,
    responses=problems(409),
    dependencies=[WRITE],
)
def create_campaign(body: s.CampaignCreate, session: DbSession) -> s.Campaign:
    """A campaign; its ``key`` is what leads and touchpoints name it by."""
    return s.Campaign.model_validate(touchpoints.create_campaign(session, campaign_in=body))


@router.get("/campaigns", response_model=Page[s.Campaign], dependencies=[READ])
def list_campaigns(
    session: DbSession, limit: Limit = 100, cursor: str | None = None
) -> Page[s.Campaign]:
    after = cursor_field(cursor, "after", uuid.UUID)
    rows = touchpoints.list_campaigns(session, after=after, limit=limit)
    return Page(
        items=[s.Campaign.model_validate(c) for c in rows], next_cursor=next_after(rows, limit)
    )


@router.get(
    "/campaigns/{campaign_id}",
    response_model=s.Campaign,
    responses=problems(404),
    dependencies=[READ],
)
def get_campaign(campaign_id: uuid.UUID, session: DbSession) -> s.Campaign:
    return s.Campaign.model_validate(touchpoints.get_campaign(session, campaign_id=campaign_id))


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=s.Campaign,
    responses=problems(404),
    dependencies=[WRITE],
)
def update_campaign(
    campaign_id: uuid.UUID, body: s.CampaignUpdate, session: DbSession
) -> s.Campaign:
    found = touchpoints.update_campaign(session, campaign_id=campaign_id, campaign_in=body)
    return s.Campaign.model_validate(found)


@router.get("/scoring-model", response_model=ScoringModelDocument, dependencies=[READ])
def get_scoring_model(session: DbSession, response: Response) -> ScoringModelDocument:
    """The scoring model in force (``X-Model-Version``: 0 is the shipped default)."""
    model = qualification.active_model(session)
    response.headers["X-Model-Version"] = str(model.version)
    return model.document


@router.put("/scoring-model", response_model=ScoringModelDocument)
def replace_scoring_model(
    body: ScoringModelDocument, session: DbSession, response: Response, principal: Writer
) -> ScoringModelDocument:
    """Replace the model (stored as a new version); scores follow on their next recompute."""
    model = qualification.replace_model(session, document=body, created_by=principal.name)
    response.headers["X-Model-Version"] = str(model.version)
    return model.document


@router.get(
    "/scores/{contact_id}",
    response_model=s.ScoreDetail,
    responses=problems(404),
    dependencies=[READ],
)
def get_score(contact_id: uuid.UUID, session: DbSession) -> s.ScoreDetail:
    """A person's current score and its last 100 changes, each with its reasons."""
    current, history = qualification.get_score(session, contact_id=contact_id)
    return s.ScoreDetail(
        score=s.ScoreOut.model_validate(current),
        history=[s.ScoreChangeOut.model_validate(h) for h in history],
    )


routers = (router, team_router, pipeline_router)
