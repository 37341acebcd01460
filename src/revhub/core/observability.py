"""Metrics, structured logs and the request context middleware (seed 000 "monitoring").

One Prometheus registry for the process; domains register their own metrics on it. Every
log line is JSON and carries the request id, which is also returned in ``X-Request-ID`` and
stored with audit rows, so one id ties a client's report to the logs and the audit trail.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from revhub.core.errors import BodyTooLarge, FieldError, InvalidInput, NulInBody, RevHubError
from revhub.core.events.envelope import correlated
from revhub.core.problems import problem_response

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "revhub_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "revhub_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter(
    "revhub_rate_limited",
    "Requests refused by a rate limit or quota, by domain.",
    ["domain"],
    registry=REGISTRY,
)
SHED = Counter(
    "revhub_shed",
    "Requests answered 503 unstarted: they waited past REVHUB_SHED_AFTER_SECONDS for a slot.",
    registry=REGISTRY,
)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = structlog.get_logger("revhub.http")


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (it is replaced under test runners)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def request_id_from(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` when it is a safe token, else a new UUID."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _nul_markers(scope: Scope) -> tuple[bytes, ...]:
    """How a NUL looks in this body: raw, JSON-escaped, or %-encoded in a form."""
    for name, value in scope.get("headers", []):
        if name == b"content-type" and value.startswith(b"application/x-www-form-urlencoded"):
            return (b"\x00", b"%00")
    return (b"\x00", b"\\u0000")


def _nul_in_query(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return b"%00" in query or b"\x00" in query


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestContext:
    """Pure ASGI middleware: request id, body-size cap, metrics, access log, rate headers."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_in_flight: int = 0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["arrived"] = time.monotonic()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        if _declared_length(scope) > self.max_body_bytes:
            status = 413
            response = problem_response(
                RevHubError(
                    413,
                    "payload-too-large",
                    "Payload too large",
                    f"The request body is over {self.max_body_bytes} bytes; send less per request "
                    "(bulk endpoints take at most 1,000 items).",
                ),
                request_id,
            )
            await response(scope, receive, send)
            self._observe(scope, status, time.perf_counter() - started)
            return
        if self._sheds(scope):
            status = 503
            SHED.inc()
            busy = RevHubError(
                503,
                "overloaded",
                "Overloaded",
                f"The hub is busy with {self.in_flight} requests; retry after the Retry-After "
                "seconds, or send bulk requests.",
                headers={"Retry-After": "1"},
            )
            await problem_response(busy, request_id)(scope, receive, send)
            self._observe(scope, status, time.perf_counter() - started)
            return
        if _nul_in_query(scope):
            status = 422
            response = problem_response(
                InvalidInput([FieldError("query", "holds a NUL character (%00); remove it")]),
                request_id,
            )
            await response(scope, receive, send)
            self._observe(scope, status, time.perf_counter() - started)
            return

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                decision = scope["state"].get("rate_limit")
                if decision is not None and status != 429:
                    headers.extend(
                        (k.lower().encode(), v.encode()) for k, v in decision.headers().items()
                    )
                message = {**message, "headers": headers}
            await send(message)

        self.in_flight += 1
        try:
            with correlated(request_id):
                await self.app(scope, self._capped(scope, receive), send_with_headers)
        finally:
            self.in_flight -= 1
            self._observe(scope, status, time.perf_counter() - started)

    def _sheds(self, scope: Scope) -> bool:
        """Past ``max_in_flight``, a request is answered 503 at once, except the probes and
        ``/metrics``: an overloaded hub is when its operators most need to see it, and these
        cost little (a benchmark's scrape at 200 leads/s over capacity got 503s)."""
        if not self.max_in_flight or self.in_flight < self.max_in_flight:
            return False
        return scope.get("path") not in NEVER_SHED

    def _capped(self, scope: Scope, receive: Receive) -> Receive:
        """Count body bytes as they arrive, so a chunked upload cannot get past the cap, and
        refuse NUL characters, which PostgreSQL text cannot hold (a 422, not a 500 later)."""
        seen = 0
        limit = self.max_body_bytes
        markers = _nul_markers(scope)
        tail = b""

        async def capped_receive() -> Message:
            nonlocal seen, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    raise BodyTooLarge(f"the request body is over {limit} bytes")
                window = tail + chunk
                if any(m in window for m in markers):
                    raise NulInBody("the body holds a NUL character (\\u0000)")
                tail = window[-6:]
            return message

        return capped_receive

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        labels = (scope["method"], template, str(status))
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_LATENCY.labels(*labels).observe(seconds)
        state = scope.get("state", {})
        principal = state.get("principal")
        log.info(
            "request",
            method=scope["method"],
            path=scope["path"],
            route=template,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            credential=getattr(principal, "name", None),
        )
