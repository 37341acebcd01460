"""OpenAPI declarations of the problem responses, so the document tells the truth (§3)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request, Response

from revhub.core.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

_DESCRIPTIONS = {
    400: "Undecodable body or bad request",
    401: "No credentials, or credentials not valid",
    403: "The credential's role lacks the scope",
    404: "No such resource",
    405: "Method not allowed (see Allow)",
    409: "Conflicts with stored data",
    413: "Body over REVHUB_MAX_BODY_BYTES",
    422: "Invalid input; `errors` names each field",
    429: "Rate limit or quota used up (see Retry-After)",
    502: "A vendor system the hub called did not answer or failed",
    503: "A dependency is unreachable, or the hub is overloaded (see Retry-After)",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given statuses, as problem+json."""
    return {
        s: {"description": _DESCRIPTIONS[s], "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        for s in statuses
    }


PUBLIC = problems(400, 413, 422)
PROTECTED = problems(400, 401, 403, 413, 422, 429, 503)


CSV = "text/csv"


def wants_csv(request: Request) -> bool:
    """The client asked for CSV (``Accept: text/csv``) rather than JSON (DESIGN §3)."""
    return CSV in request.headers.get("accept", "")


def csv_response(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str], filename: str
) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def with_csv(description: str) -> dict[int | str, dict[str, Any]]:
    """The 200 entry of a route that also answers ``text/csv``."""
    return {200: {"description": description, "content": {CSV: {"schema": {"type": "string"}}}}}
