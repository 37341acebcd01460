"""Liveness, readiness and Prometheus metrics (seed 000 "monitoring": uptime, error rate)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from revhub.core.auth.scopes import METRICS_READ
from revhub.core.events import metrics as backbone
from revhub.core.http import DbSession, hub_of, require
from revhub.core.problems import PROBLEM_JSON
from revhub.core.responses import PROTECTED, problems

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (for a liveness probe; touches nothing else)."""
    return {"status": "ok"}


@router.get("/readyz", responses=problems(503))
async def readyz(request: Request) -> Response:
    """The database and, when configured, Redis answer (for a readiness probe)."""
    hub = hub_of(request)
    checks: dict[str, Any] = {}
    checks["database"] = await run_in_threadpool(_check, hub.db.ping)
    if hub.settings.redis_url:
        checks["redis"] = await run_in_threadpool(_check, hub.limiter.ping)
    ok = all(v == "ok" for v in checks.values())
    if ok:
        return JSONResponse({"status": "ok", "checks": checks})
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    return JSONResponse(
        {
            "type": "https://revhub.dev/problems/unavailable",
            "title": "Not ready",
            "status": 503,
            "detail": f"Unreachable: {failing}. Check the server and its URL.",
            "checks": checks,
        },
        status_code=503,
        media_type=PROBLEM_JSON,
    )


def _check(probe: Any) -> str:
    try:
        probe()
    except Exception as exc:  # a probe must report any failure, not raise it
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return "ok"


@router.get(
    "/metrics",
    dependencies=[require(METRICS_READ)],
    responses=PROTECTED,
    response_class=Response,
)
def metrics(request: Request, session: DbSession) -> Response:
    """Prometheus text: requests by route and status, latency, rate-limit refusals, outbox
    and consumer lag, deliveries, retries, dead letters, job runs and durations."""
    hub = hub_of(request)
    backbone.refresh(session, hub.bus, hub.consumers)
    registry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
