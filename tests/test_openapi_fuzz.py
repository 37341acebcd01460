"""Fuzz every operation of the generated OpenAPI document with Schemathesis (DESIGN.md §3).

Valid and invalid requests alike must never get a 5xx; every error is RFC 9457
``application/problem+json`` without a stack trace, and a 422 names each field at fault;
answers match the document (status codes, content types, response schemas); valid data is
accepted and invalid data refused.

Schemathesis makes one test per operation at collection time, so the document is read once
at import; each test then fuzzes an app built from its own fixtures (a rolled-back
transaction, an admin key). ``test_the_fuzzed_document_is_the_apps`` keeps the two honest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import (
    CheckContext,
    negative_data_rejection,
    positive_data_acceptance,
)
from sqlalchemy import create_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from revhub.api import create_app
from revhub.core.db import Database
from revhub.core.settings import RateLimit, Settings

LOCATIONS = {"body", "query", "path", "header"}
TRACEBACK_MARKS = ("Traceback", 'File "')


def _document() -> dict[str, Any]:
    """The app's OpenAPI document; building it touches no database and no Redis."""
    with tempfile.TemporaryDirectory() as tmp:
        throwaway = Settings(
            data_dir=Path(tmp),
            database_url="sqlite://",
            redis_url=None,
            bus="local",
            jwt_secret=SecretStr("j" * 40),
            pii_key=SecretStr("p" * 40),
            audit_key=SecretStr("a" * 40),
        )
        app = create_app(throwaway, db=Database(create_engine("sqlite://")), check_schema=False)
        return app.openapi()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            # Valid and invalid data, through the examples, coverage (boundaries, wrong
            # types, missing and unknown fields) and fuzzing phases; every check is on.
            # No NUL characters: the hub refuses them by design with a 422 (PostgreSQL text
            # cannot hold them), which the schema does not spell out for every string;
            # tests/core/test_bad_input.py::test_a_nul_character_is_not_a_500 covers them.
            "generation": {"mode": "all", "allow-x00": False},
        }
    ),
)

KNOWN_BUGS: list[Any] = []
BUSINESS_RULES = {
    # Schema-valid input these operations refuse with a 422 naming the field, by rules JSON
    # Schema cannot state: e-mail syntax and blank names (the data-quality engine), campaign
    # keys, accounts, contacts and territories that must exist, ranges given as two fields.
    # Their bad-input tests are in tests/sales; every other check still runs on them.
    "POST /api/v1/integrations/sales/leads",
    "POST /api/v1/integrations/sales/touchpoints",
    "POST /api/v1/integrations/sales/opportunities",
    "PATCH /api/v1/integrations/sales/opportunities/{opportunity_id}",
    "POST /api/v1/integrations/sales/reps",
    "POST /api/v1/integrations/sales/territories",
    "PATCH /api/v1/integrations/sales/territories/{territory_id}",
    "POST /api/v1/integrations/sales/campaigns",
    "PATCH /api/v1/integrations/sales/reps/{rep_id}",
    "PATCH /api/v1/integrations/sales/campaigns/{campaign_id}",
    "GET /api/v1/integrations/sales/performance",
    # A period given as two fields, weights that must add up to 100, one currency at a time.
    "GET /api/v1/integrations/sales/attribution",
    "GET /api/v1/integrations/sales/attribution/compare",
    "GET /api/v1/integrations/sales/attribution/{campaign_id}",
    # Which credential fields a vendor takes (tests/crm/test_connections_api.py).
    "POST /api/v1/crm/connections",
}


def problem_json_on_errors(_ctx: CheckContext, response: Any, _case: schemathesis.Case) -> None:
    """Every 4xx/5xx is a problem document; a 422 names each field; no stack trace anywhere."""
    text = response.text
    assert not any(mark in text for mark in TRACEBACK_MARKS), f"a stack trace in: {text}"
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == "application/problem+json", f"answered as {content_type!r}"
    body = response.json()
    assert body["status"] == response.status_code
    assert all(isinstance(body.get(k), str) and body[k] for k in ("type", "title", "detail"))
    if response.status_code == 422:
        assert body["errors"], "a 422 lists the fields at fault"
        for error in body["errors"]:
            assert error["field"].split(".")[0] in LOCATIONS, error
            assert error["message"] and error["type"], error


def _read_differently(value: object) -> bool:
    """Does ``value`` hold data JSON Schema and the request models read differently?

    270.0 is an integer to JSON Schema, not to a strict model.
    """
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_read_differently(v) for v in value.values())
    if isinstance(value, list):
        return any(_read_differently(v) for v in value)
    return False


@pytest.fixture
def fuzz_app(settings: Settings, db: Database) -> Iterator[ASGIApp]:
    # A bucket no run can empty, not even the token endpoint's per-address one that every
    # test shares in Redis (a 429 would still pass: it is a declared problem document).
    roomy = RateLimit(rate=1_000_000, burst=10**12)
    app = create_app(
        settings.model_copy(update={"rate_limit": roomy, "rate_limits": {}}),
        db=db,
        check_schema=False,
    )

    async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
        # Schemathesis would keep a lifespan it starts running until the process exits.
        if scope["type"] == "http":
            await app(scope, receive, send)

    with TestClient(app):  # the app's own lifespan, for this test only
        yield http_only


@pytest.fixture
def admin(auth_headers: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return auth_headers("admin")


def test_the_fuzzed_document_is_the_apps(app: FastAPI) -> None:
    assert app.openapi() == DOCUMENT
    fuzzed = {result.ok().label for result in schema.get_all_operations()}
    declared = {f"{m.upper()} {path}" for path, ops in DOCUMENT["paths"].items() for m in ops}
    assert fuzzed == declared and len(fuzzed) >= 10


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    # One app and one admin key per operation, shared by its examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_operation(case: schemathesis.Case, fuzz_app: ASGIApp, admin: dict[str, str]) -> None:
    case.operation.app = case.operation.schema.app = fuzz_app  # this test's app
    # A cursor is opaque: any string fits the schema, but only one we issued is accepted.
    ambiguous = _read_differently(case.body) or "cursor" in (case.query or {})
    data_checks = [positive_data_acceptance, negative_data_rejection] if ambiguous else []
    # The fuzzer reuses one Idempotency-Key across different bodies, which the IETF
    # idempotency-key draft answers with a 422: valid, but not acceptable data.
    reused_key = "Idempotency-Key" in (case.headers or {})
    if f"{case.method.upper()} {case.path}" in BUSINESS_RULES or reused_key:
        data_checks.append(positive_data_acceptance)
    case.call_and_validate(
        headers=admin,
        additional_checks=[problem_json_on_errors],
        excluded_checks=KNOWN_BUGS + data_checks,
    )
