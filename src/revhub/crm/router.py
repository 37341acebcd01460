"""CRM routes (admin): connections (store, list, check), syncs (ask for one, its runs and
their row logs as CSV, the failed-row index), the conflict queue and reconciliation."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse

from revhub.contacts.pii import Pii, pii_for
from revhub.core.auth.principal import Principal
from revhub.core.auth.scopes import ADMIN
from revhub.core.errors import RevHubError
from revhub.core.http import DbSession, hub_of, require
from revhub.core.pagination import MAX_LIMIT
from revhub.core.responses import CSV, PROTECTED, problems, with_csv
from revhub.crm import pull, reconcile, runs, service, sync
from revhub.crm import schemas as s
from revhub.crm.connectors.base import ConnectorError
from revhub.crm.merge import conflict_values, list_conflicts
from revhub.crm.models import Conflict, CrmConnection

router = APIRouter(prefix="/api/v1/crm", tags=["crm"], responses=PROTECTED)
ADMINISTER = require(ADMIN)
Admin = Annotated[Principal, ADMINISTER]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _out(connection: CrmConnection) -> s.Connection:
    return s.Connection(
        id=connection.id,
        name=connection.name,
        crm=connection.crm,
        base_url=connection.settings.get("base_url"),
        currency=connection.settings.get("currency", "USD"),
        active=connection.active,
        created_at=connection.created_at,
    )


@router.post(
    "/connections",
    status_code=status.HTTP_201_CREATED,
    response_model=s.Connection,
    responses=problems(409),
    dependencies=[ADMINISTER],
)
def add_connection(body: s.ConnectionCreate, session: DbSession, request: Request) -> s.Connection:
    """Store a CRM connection; its credentials are sealed and never shown again."""
    box = service.credentials_box(hub_of(request).settings)
    connection = service.add_connection(
        session,
        box,
        name=body.name,
        crm=body.crm,
        credentials=body.credentials,
        base_url=body.base_url,
        currency=body.currency,
        prefix="body.",
    )
    request.state.resource_id = connection.name
    return _out(connection)


@router.get("/connections", response_model=list[s.Connection], dependencies=[ADMINISTER])
def list_connections(session: DbSession) -> list[s.Connection]:
    return [_out(c) for c in service.list_connections(session)]


@router.get(
    "/connections/{name}/check",
    response_model=s.ConnectionCheck,
    responses=problems(404, 502),
    dependencies=[ADMINISTER],
)
def check_connection(name: str, session: DbSession, request: Request) -> s.ConnectionCheck:
    """Authenticate with the CRM and name every mapped field it lacks (``ok`` when the
    credentials work and nothing is missing). The connection is read and the transaction
    ended before the CRM is called: a slow CRM holds no database lock."""
    connection = service.get_connection(session, name=name)
    session.commit()
    box = service.credentials_box(hub_of(request).settings)
    try:
        mappings = service.mappings_for(hub_of(request).settings)
        check = service.check(connection, box, mappings, hub_of(request).db)
    except ConnectorError as exc:
        raise _unavailable(exc) from exc
    return s.ConnectionCheck(
        connection=check.connection,
        crm=check.crm,
        ok=check.ok,
        authenticated=check.report.authenticated,
        missing_fields=check.report.missing_fields,
        detail=check.report.detail,
    )


def _unavailable(exc: ConnectorError) -> RevHubError:
    return RevHubError(502, "crm-unavailable", "CRM unavailable", str(exc))


@router.post(
    "/connections/{name}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=s.SyncRequested,
    responses=problems(404),
    dependencies=[ADMINISTER],
)
def request_sync(name: str, session: DbSession, full: bool = False) -> s.SyncRequested:
    """Ask the worker for a sync of this connection: push contacts, pull contacts, pull
    deals, push deals (``full``: every record, not only what changed since the last run). Its runs
    appear under ``GET /crm/runs`` as they finish."""
    connection = service.get_connection(session, name=name)
    asked = sync.request_sync(session, connection_id=connection.id, full=full, trigger="api")
    return s.SyncRequested(
        connection=name,
        full=asked.full,
        requested_at=asked.requested_at,
        detail="queued for the worker; follow it at GET /api/v1/crm/runs?connection=" + name,
    )


@router.get(
    "/runs", response_model=list[s.SyncRun], responses=problems(404), dependencies=[ADMINISTER]
)
def list_runs(
    session: DbSession, connection: str | None = None, limit: Limit = 50
) -> list[s.SyncRun]:
    """Sync runs, newest first, of one connection or all."""
    connection_id = service.get_connection(session, name=connection).id if connection else None
    return [
        s.SyncRun.model_validate(r)
        for r in runs.list_runs(session, connection_id=connection_id, limit=limit)
    ]


@router.get(
    "/runs/{run_id}", response_model=s.SyncRun, responses=problems(404), dependencies=[ADMINISTER]
)
def get_run(run_id: uuid.UUID, session: DbSession) -> s.SyncRun:
    return s.SyncRun.model_validate(runs.get_run(session, run_id=run_id))


@router.get(
    "/runs/{run_id}/rows",
    response_class=StreamingResponse,
    responses=with_csv("The run's row log: one CSV line per record and its outcome")
    | problems(404),
    dependencies=[ADMINISTER],
)
def export_run_rows(run_id: uuid.UUID, session: DbSession) -> StreamingResponse:
    """Every row of the run (``run_id, at, hub_id, crm_id, outcome, error``) as CSV."""
    runs.get_run(session, run_id=run_id)
    chunks = list(runs.export_rows(session, run_id=run_id))
    return StreamingResponse(
        iter(chunks),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="crm-run-{run_id}.csv"'},
    )


@router.get(
    "/connections/{name}/failed-rows",
    response_model=list[s.FailedRow],
    responses=problems(404),
    dependencies=[ADMINISTER],
)
def list_failed_rows(name: str, session: DbSession) -> list[s.FailedRow]:
    """The rows every later run retries, with the vendor's last error."""
    connection = service.get_connection(session, name=name)
    return [
        s.FailedRow.model_validate(r)
        for r in runs.failed_rows(session, connection_id=connection.id)
    ]


@router.get("/conflicts", response_model=list[s.Conflict], dependencies=[ADMINISTER])
def get_conflicts(
    session: DbSession,
    request: Request,
    status: Literal["open", "resolved"] | None = "open",
    limit: Limit = 100,
) -> list[s.Conflict]:
    """Critical fields both sides changed, waiting for a person (``status=open``)."""
    pii = pii_for(hub_of(request).settings)
    return [_conflict_out(pii, c) for c in list_conflicts(session, status=status, limit=limit)]


@router.post(
    "/conflicts/{conflict_id}/resolve",
    response_model=s.Conflict,
    responses=problems(404, 409),
)
def resolve_conflict(
    conflict_id: uuid.UUID,
    body: s.ConflictResolution,
    session: DbSession,
    request: Request,
    principal: Admin,
) -> s.Conflict:
    """Settle a conflict: ``crm`` applies the CRM's value to the hub; ``hub`` keeps the
    hub's and queues the contact to be pushed again."""
    pii = pii_for(hub_of(request).settings)
    mappings = service.mappings_for(hub_of(request).settings)
    conflict = pull.resolve_conflict(
        session, pii, mappings, conflict_id=conflict_id, side=body.side, by=principal.name
    )
    return _conflict_out(pii, conflict)


def _conflict_out(pii: Pii, conflict: Conflict) -> s.Conflict:
    hub_value, crm_value = conflict_values(pii, conflict)
    shown = s.Conflict.model_validate(conflict)
    return shown.model_copy(update={"hub_value": hub_value, "crm_value": crm_value})


@router.post(
    "/connections/{name}/reconciliation",
    response_model=s.Reconciliation,
    responses=problems(404, 502),
    dependencies=[ADMINISTER],
)
def run_reconciliation(name: str, session: DbSession, request: Request) -> s.Reconciliation:
    """Compare every contact of the hub with the CRM's now and report the discrepancies
    and the sync accuracy (seed target 99.95 %); differing contacts are pushed again by the
    next run. It reads the whole CRM: for large accounts use ``revhub crm reconcile``. The
    request's transaction ends before the CRM is called: a slow CRM holds no lock."""
    service.get_connection(session, name=name)
    session.commit()
    hub = hub_of(request)
    try:
        report = reconcile.reconcile_connection(
            hub.db,
            pii_for(hub.settings),
            service.credentials_box(hub.settings),
            service.mappings_for(hub.settings),
            name=name,
            trigger="api",
        )
    except ConnectorError as exc:
        raise _unavailable(exc) from exc
    return s.Reconciliation(
        run_id=report.run_id,
        connection=name,
        compared=report.compared,
        matching=report.matching,
        accuracy_percent=report.accuracy_percent,
        meets_target=report.meets_target,
        discrepancies=[
            s.Discrepancy(hub_id=d.hub_id, crm_id=d.crm_id, problem=d.problem)
            for d in report.discrepancies[:100]
        ],
    )
