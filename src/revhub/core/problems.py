"""Render every error as RFC 9457 ``application/problem+json`` (DESIGN.md §3).

The handlers cover the hub's own :class:`RevHubError` and everything the framework raises:
undecodable JSON (400), validation (422 with one entry per field), unknown paths (404),
wrong methods (405 with ``Allow``), oversize bodies (413) and, last, anything unexpected
(500 with the request id and no stack trace; the trace goes to the log).
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from revhub.core.errors import (
    PROBLEM_BASE,
    BodyTooLarge,
    Conflict,
    FieldError,
    InvalidInput,
    NulInBody,
    RevHubError,
)

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("revhub.errors")


def problem_body(error: RevHubError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if error.errors:
        body["errors"] = [
            {"field": e.field, "message": e.message, "type": e.type} for e in error.errors
        ]
    oauth_error = getattr(error, "oauth_error", None)
    if oauth_error:
        body["error"] = oauth_error
        body["error_description"] = error.detail
    if request_id:
        body["request_id"] = request_id
    return body


def problem_response(error: RevHubError, request_id: str | None) -> JSONResponse:
    return JSONResponse(
        problem_body(error, request_id),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=error.headers or None,
    )


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def field_errors(raw: list[dict[str, Any]]) -> list[FieldError]:
    """Pydantic's error list as ``location.field: message`` entries a person can act on."""
    out = []
    for err in raw:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field; remove it"
        out.append(FieldError(loc or "body", message, str(err.get("type", "invalid"))))
    return out


def validation_problem(exc: RequestValidationError) -> RevHubError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        where = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = where.get("ctx", {}).get("error", "")
        return RevHubError(
            400,
            "malformed-body",
            "Malformed request body",
            f"The body is not valid JSON ({ctx}); send a JSON document with "
            "Content-Type: application/json.",
        )
    return InvalidInput(field_errors(errors))


async def _on_revhub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RevHubError)
    hook = getattr(request.app.state, "on_problem", None)
    if hook is not None:
        await hook(request, exc)
    return problem_response(exc, _request_id(request))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return await _on_revhub_error(request, validation_problem(exc))


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, BodyTooLarge):
        return await _on_body_too_large(request, exc.__cause__)
    if isinstance(exc.__cause__, NulInBody):
        return await _on_nul_in_body(request, exc.__cause__)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    if exc.status_code == 404:
        error = RevHubError(
            404, "not-found", "Not found", f"No route at {request.url.path}; see /docs for the API."
        )
    elif exc.status_code == 405:
        allowed = headers.get("Allow", headers.get("allow", ""))
        error = RevHubError(
            405,
            "method-not-allowed",
            "Method not allowed",
            f"{request.method} is not allowed here; use one of: {allowed}.",
        )
    else:
        error = RevHubError(exc.status_code, "http-error", "HTTP error", str(exc.detail))
    error.headers = headers
    return await _on_revhub_error(request, error)


async def _on_body_too_large(request: Request, exc: Exception) -> JSONResponse:
    return await _on_revhub_error(
        request,
        RevHubError(
            413, "payload-too-large", "Payload too large", f"{exc}; send less per request."
        ),
    )


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("data_error", error=str(exc).splitlines()[0])
    return await _on_revhub_error(
        request,
        RevHubError(
            422,
            "unstorable-value",
            "Value cannot be stored",
            "A value is too long or out of range for where it is stored; shorten it and retry.",
            [FieldError("body", "a value is too long or out of range")],
        ),
    )


async def _on_integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("integrity_error", error=str(exc).splitlines()[0])
    return await _on_revhub_error(
        request,
        Conflict(
            "The change conflicts with data already stored (a duplicate or a missing reference)."
        ),
    )


async def _on_nul_in_body(request: Request, exc: Exception) -> JSONResponse:
    return await _on_revhub_error(
        request,
        InvalidInput(
            [
                FieldError(
                    "body", "holds a NUL character (\\u0000), which cannot be stored; remove it"
                )
            ]
        ),
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method the API answers at this path, from the OpenAPI document (a 405's Allow
    must list them all, not just those of the first route that matched the path)."""
    document = request.app.openapi()
    methods: set[str] = set()
    for template, operations in document.get("paths", {}).items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path)
    return problem_response(
        RevHubError(
            500,
            "internal-error",
            "Internal error",
            "Something went wrong on our side; quote the request_id when you report it.",
        ),
        _request_id(request),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RevHubError, _on_revhub_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(BodyTooLarge, _on_body_too_large)
    app.add_exception_handler(NulInBody, _on_nul_in_body)
    app.add_exception_handler(IntegrityError, _on_integrity_error)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(Exception, _on_unexpected)
