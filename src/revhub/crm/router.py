"""CRM connection routes (admin): store one, list them, check one against its CRM."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from revhub.core.auth.scopes import ADMIN
from revhub.core.errors import RevHubError
from revhub.core.http import DbSession, hub_of, require
from revhub.core.responses import PROTECTED, problems
from revhub.crm import schemas as s
from revhub.crm import service
from revhub.crm.connectors.base import ConnectorError
from revhub.crm.models import CrmConnection

router = APIRouter(prefix="/api/v1/crm", tags=["crm"], responses=PROTECTED)
ADMINISTER = require(ADMIN)


def _out(connection: CrmConnection) -> s.Connection:
    return s.Connection(
        id=connection.id,
        name=connection.name,
        crm=connection.crm,
        base_url=connection.settings.get("base_url"),
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
        check = service.check(connection, box)
    except ConnectorError as exc:
        raise RevHubError(502, "crm-unavailable", "CRM unavailable", str(exc)) from exc
    return s.ConnectionCheck(
        connection=check.connection,
        crm=check.crm,
        ok=check.ok,
        authenticated=check.report.authenticated,
        missing_fields=check.report.missing_fields,
        detail=check.report.detail,
    )
