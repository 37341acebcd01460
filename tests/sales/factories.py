"""Small builders for the sales API tests: request bodies, and helpers that read answers back
through the API the way a user would."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

SALES = "/api/v1/integrations/sales"
CONTACTS = "/api/v1/contacts"
PROBLEM_JSON = "application/problem+json"
ON_POSTGRES = os.environ.get("REVHUB_DATABASE_URL", "").startswith("postgresql")

Headers = Callable[[str], dict[str, str]]
_serial = itertools.count(1)


def unique(prefix: str = "x") -> str:
    """A short token no other call in this process returns."""
    return f"{prefix}{next(_serial)}"


def lead(**fields: Any) -> dict[str, Any]:
    """A complete, valid lead (quality score 100); ``name=None`` leaves a field out."""
    body: dict[str, Any] = {
        "email": "ada.lovelace@analytical.example",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "job_title": "VP Engineering",
        "country": "GB",
        "phone": "+44 20 7946 0958",
        "lead_source": "webinar",
        "industry": "Software",
        "employee_count": 250,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def lead_at(domain: str, local: str = "pat", **fields: Any) -> dict[str, Any]:
    """A valid lead of a company of its own (``domain``): its account holds only what this
    lead says (firmographics are first-come on an account)."""
    return lead(email=f"{local}@{domain}", company=f"{domain} Corp", **fields)


def problem(answer: Response, status: int = 422) -> list[str]:
    """Assert ``answer`` is an RFC 9457 problem of ``status``; return its error fields."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    return [e["field"] for e in answer.json().get("errors", [])]


def created(answer: Response, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


def contact_by_email(client: TestClient, headers: dict[str, str], email: str) -> Any:
    """The profile an e-mail finds (``GET /contacts?email=``), or None."""
    answer = client.get(CONTACTS, params={"email": email}, headers=headers)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    return items[0] if items else None


def contact(client: TestClient, headers: dict[str, str], contact_id: str) -> dict[str, Any]:
    """The full profile, with ``stage_history``."""
    return created(client.get(f"{CONTACTS}/{contact_id}", headers=headers), 200)


def all_items(client: TestClient, headers: dict[str, str], path: str, **params: Any) -> list[Any]:
    """Every item of a cursor-paginated list, following ``next_cursor``."""
    items: list[Any] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        page = created(client.get(path, params=query, headers=headers), 200)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def territory(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    return created(client.post(f"{SALES}/territories", json=fields, headers=headers))


def rep(
    client: TestClient, headers: dict[str, str], territory_id: str | None, **fields: Any
) -> dict[str, Any]:
    name = fields.pop("name", None) or unique("Rep ")
    body = {"name": name, "email": f"{unique('rep')}@sales.example", **fields}
    if territory_id is not None:
        body["territory_id"] = territory_id
    return created(client.post(f"{SALES}/reps", json=body, headers=headers))


def capture(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return created(client.post(f"{SALES}/leads", json=body, headers=headers))
