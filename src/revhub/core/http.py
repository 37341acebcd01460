"""What every route depends on: the hub's parts, the request transaction, the caller.

* :data:`DbSession` — the request's transaction (DESIGN.md §9.1). It commits after the
  route returns and before the response is sent, appending the audit entry of a write in
  the same transaction, so a write is never committed without its audit row.
* :func:`require` — declares the scope a route needs; it authenticates the caller (API key
  or OAuth access token), checks the scope, and draws from the caller's rate-limit bucket
  for the scope's domain.
* :func:`audit_problem` — records denied requests (401/403/429) and failed writes in a
  transaction of their own, since the request's was rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import APIKeyHeader, OAuth2, SecurityScopes
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from revhub.core.audit import service as audit
from revhub.core.auth import service as auth
from revhub.core.auth.principal import Principal
from revhub.core.auth.scopes import ALL_SCOPES, scope_domain
from revhub.core.db import Database, utcnow
from revhub.core.errors import Forbidden, Overloaded, RateLimited, RevHubError, Unauthenticated
from revhub.core.events.bus import Bus
from revhub.core.events.consumers import ConsumerRegistry
from revhub.core.jobs.registry import JobRegistry
from revhub.core.observability import RATE_LIMITED, SHED
from revhub.core.ratelimit import Decision, Limiter
from revhub.core.settings import RateLimit, Settings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DENIED = frozenset({401, 403, 429})
TOKEN_URL = "/api/v1/oauth/token"  # noqa: S105 (a path)


@dataclass(frozen=True)
class Hub:
    """The parts a running hub shares across requests (on ``app.state.hub``)."""

    settings: Settings
    db: Database
    limiter: Limiter
    consumers: ConsumerRegistry
    bus: Bus
    jobs: JobRegistry
    recent_keys: auth.RecentKeys = field(default_factory=auth.RecentKeys)


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _audit_event(request: Request, outcome: str, status: int | None) -> audit.AuditEvent:
    principal: Principal | None = getattr(request.state, "principal", None)
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    tags = getattr(route, "tags", None) or ["api"]
    resource_id = getattr(request.state, "resource_id", None) or (
        ",".join(str(v) for v in request.path_params.values()) or None
    )
    claimed = str(getattr(request.state, "claimed_actor", "anonymous"))
    return audit.AuditEvent(
        occurred_at=utcnow(),
        actor=principal.name if principal else claimed,
        actor_id=str(principal.credential_id) if principal else None,
        role=principal.role if principal else None,
        action=f"{request.method} {template}",
        resource_type=str(tags[0]),
        resource_id=resource_id,
        request_id=getattr(request.state, "request_id", None),
        outcome=outcome,
        status_code=status,
        client_ip=request.client.host if request.client else None,
    )


@contextmanager
def request_transaction(request: Request) -> Iterator[Session]:
    """The request's transaction: 503 unstarted if the request waited past the shed limit;
    committed when the block ends, with the audit entry of a write (unless the route
    recorded it itself); rolled back if the block raises. :data:`DbSession` gives it to a
    route; an ``async`` route that needs it only on one path opens it in a thread."""
    hub = hub_of(request)
    arrived = getattr(request.state, "arrived", None)
    if arrived is not None:
        waited = time.monotonic() - arrived
        if waited > hub.settings.shed_after_seconds:
            SHED.inc()
            raise Overloaded(waited)
    session = hub.db.session_factory()
    try:
        yield session
        if request.method in WRITE_METHODS and not getattr(request.state, "audited", False):
            route = request.scope.get("route")
            status = getattr(route, "status_code", None) or 200
            event = _audit_event(request, "success", status)
            audit.record(session, event=event, key=hub.settings.secrets["audit_key"])
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _request_session(request: Request) -> Iterator[Session]:
    with request_transaction(request) as session:
        yield session


def audit_entry(request: Request) -> audit.AuditEvent:
    """The audit entry of a write that succeeds, for a route that records it itself (in a
    transaction it shares with other requests) and then calls :func:`mark_audited`."""
    route = request.scope.get("route")
    return _audit_event(request, "success", getattr(route, "status_code", None) or 200)


def mark_audited(request: Request) -> None:
    request.state.audited = True


DB_CONCURRENCY = 16
"""Requests inside a database transaction at once, per process. Fewer than the 40 threads
FastAPI runs sync code on, so the request holding SQLite's write lock always finds a thread
to finish on; without the cap, 40+ requests queued on the lock hold every thread and the
holder starves until the busy timeout. Also within PostgreSQL's pool (10 + 10 overflow).
Waiting for a slot costs no thread."""

DbSession = Annotated[
    Session, Depends(_request_session, scope="function", max_concurrency=DB_CONCURRENCY)
]


async def audit_problem(request: Request, error: RevHubError) -> None:
    """Audit a denied request, or a write that failed, in its own transaction. A request
    shed for load never started, so it is counted in metrics, not written to the database
    it was shed to protect."""
    if isinstance(error, Overloaded):
        return
    if error.status in DENIED:
        outcome = "denied"
    elif request.method in WRITE_METHODS:
        outcome = "failed"
    else:
        return
    await run_in_threadpool(_record_alone, request, outcome, error.status)


def _record_alone(request: Request, outcome: str, status: int) -> None:
    hub = hub_of(request)
    with hub.db.transaction() as session:
        event = _audit_event(request, outcome, status)
        audit.record(session, event=event, key=hub.settings.secrets["audit_key"])


api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    auto_error=False,
    description="An API key from `revhub keys create` or POST /api/v1/keys.",
)
oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL, scopes=ALL_SCOPES)
    ),
    scheme_name="OAuth2",
    auto_error=False,
    description="Client credentials: client_id = key id, client_secret = the API key.",
)


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for anything else."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _identify(hub: Hub, api_key: str | None, authorization: str | None) -> Principal:
    if api_key:
        return _by_key(hub, api_key)
    if authorization:
        token = _bearer(authorization)
        if token is None:
            raise Unauthenticated("Send 'Authorization: Bearer <token>' or an X-API-Key header.")
        if token.startswith(auth.KEY_MARK):
            return _by_key(hub, token)
        return auth.authenticate_jwt(token, signing_key=hub.settings.secrets["jwt_secret"])
    raise Unauthenticated(
        "No credentials: send an API key as X-API-Key, or an access token from "
        f"POST {TOKEN_URL} as 'Authorization: Bearer <token>'."
    )


def _by_key(hub: Hub, token: str) -> Principal:
    """An API key, checked on a read-only session: on SQLite, authenticating must not queue
    for the write lock (a request that only reads never takes it, and one that writes takes
    it for its own work alone). The key's last use is written in a short transaction of its
    own, at most once a minute."""
    now = utcnow()
    with hub.db.reading() as session:
        check = auth.verify_key(session, token=token, now=now)
    if check.stale:
        with hub.db.transaction() as session:
            auth.note_use(session, key_id=check.principal.credential_id, now=now)
    hub.recent_keys.keep(token, check)
    return check.principal


def _recently_verified(
    hub: Hub, api_key: str | None, authorization: str | None
) -> Principal | None:
    """The principal of an API key this process checked a moment ago (see
    :class:`auth.RecentKeys`); None for anything else, which :func:`_identify` decides."""
    token = api_key or _bearer(authorization)
    if not token or not token.startswith(auth.KEY_MARK):
        return None
    return hub.recent_keys.get(token, utcnow())


async def _authorize(
    security_scopes: SecurityScopes,
    request: Request,
    api_key: Annotated[str | None, Security(api_key_scheme)],
    authorization: Annotated[str | None, Security(oauth2_scheme)],
) -> Principal:
    """Async, so that a request whose key was checked a moment ago is authorized without a
    thread: its rate limit is drawn on the event loop (from memory, or Redis through an
    asyncio client); only a key not seen lately is checked against the database, in a
    thread."""
    hub = hub_of(request)
    principal = _recently_verified(hub, api_key, authorization)
    if principal is None:
        principal = await run_in_threadpool(_identify, hub, api_key, authorization)
    request.state.principal = principal
    missing = [s for s in security_scopes.scopes if not principal.allows(s)]
    if missing:
        raise Forbidden(
            f"This needs scope {', '.join(missing)}; the {principal.role!r} credential "
            f"{principal.name!r} does not have it. Use a credential whose role grants it."
        )
    domain = scope_domain(security_scopes.scopes[0]) if security_scopes.scopes else "default"
    bucket = f"{principal.credential_id}:{domain}"
    limit = hub.settings.limit_for(domain)
    _keep_decision(request, await hub.limiter.draw(bucket, limit), domain, limit)
    return principal


def draw_rate_limit(request: Request, bucket: str, domain: str) -> None:
    """Take one token from ``bucket`` under ``domain``'s limit; 429 when it is empty. From a
    thread (a sync route); the routes' own dependency draws on the event loop."""
    limit = hub_of(request).settings.limit_for(domain)
    _keep_decision(request, hub_of(request).limiter.take(bucket, limit), domain, limit)


def _keep_decision(request: Request, decision: Decision, domain: str, limit: RateLimit) -> None:
    """Note the decision for the response's ``RateLimit-*`` headers; 429 when refused."""
    request.state.rate_limit = decision
    if not decision.allowed:
        RATE_LIMITED.labels(domain).inc()
        what = "daily quota" if decision.quota_exhausted else "rate limit"
        raise RateLimited(
            f"The {what} for {domain!r} ({limit.rate:g}/s, burst {limit.burst}"
            f"{f', {limit.daily_quota}/day' if limit.daily_quota else ''}) is used up; "
            f"retry after {decision.headers()['Retry-After']} s.",
            decision.headers(),
        )


def require(scope: str) -> Any:
    """The dependency a route declares to need ``scope``; it yields the :class:`Principal`."""
    return Security(_authorize, scopes=[scope])


def require_credential() -> Any:
    """For the few routes any valid credential may call (``/api/v1/auth/me``)."""
    return Security(_authorize, scopes=[])
