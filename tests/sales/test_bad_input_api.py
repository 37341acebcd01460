"""Bad input on every sales write endpoint: strict types ("7" is not an integer, true is not
a string), unknown fields, too-long strings and missing fields are refused with a 422
``application/problem+json`` naming every field at once, and nothing is written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.sales.models import Touchpoint
from tests.sales.factories import (
    CONTACTS,
    SALES,
    Headers,
    all_items,
    capture,
    contact_by_email,
    created,
    lead,
    lead_at,
    problem,
)

WHEN = "2026-04-01T09:00:00Z"


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


@pytest.fixture
def existing(client: TestClient, sales: dict[str, str]) -> dict[str, Any]:
    """One of everything a PATCH can aim at."""
    person = capture(client, sales, lead_at("existing.example", local="eli"))
    campaign = created(
        client.post(
            f"{SALES}/campaigns",
            json={"key": "base", "name": "Base", "channel": "email"},
            headers=sales,
        )
    )
    territory = created(
        client.post(
            f"{SALES}/territories", json={"name": "Base", "countries": ["GB"]}, headers=sales
        )
    )
    rep = created(
        client.post(
            f"{SALES}/reps",
            json={"name": "Rae", "email": "rae@sales.example", "territory_id": territory["id"]},
            headers=sales,
        )
    )
    opp = created(
        client.post(
            f"{SALES}/opportunities",
            json={
                "account_domain": "existing.example",
                "name": "Base deal",
                "amount": "10.00",
                "currency": "USD",
                "stage": "new",
                "opened_at": WHEN,
            },
            headers=sales,
        )
    )
    return {
        "contact_id": person["contact_id"],
        "campaign_id": campaign["id"],
        "rep_id": rep["id"],
        "opportunity_id": opp["id"],
    }


def snapshot(client: TestClient, sales: dict[str, str], existing: dict[str, Any]) -> Any:
    """Everything the sales API shows, to compare before and after a refused write."""
    model = client.get(f"{SALES}/scoring-model", headers=sales)
    return {
        "contacts": all_items(client, sales, CONTACTS),
        "accounts": all_items(client, sales, "/api/v1/accounts"),
        "campaigns": all_items(client, sales, f"{SALES}/campaigns"),
        "opportunities": all_items(client, sales, f"{SALES}/opportunities"),
        "territories": client.get(f"{SALES}/territories", headers=sales).json(),
        "reps": client.get(f"{SALES}/reps", headers=sales).json(),
        "model": (model.headers["X-Model-Version"], model.json()),
        "score": client.get(f"{SALES}/scores/{existing['contact_id']}", headers=sales).json(),
        "profile": client.get(f"{CONTACTS}/{existing['contact_id']}", headers=sales).json(),
    }


TOUCH = {"channel": "web", "kind": "web_session", "occurred_at": WHEN}
OPP = {
    "account_domain": "existing.example",
    "name": "Deal",
    "amount": "10.00",
    "currency": "USD",
    "stage": "new",
    "opened_at": WHEN,
}

# (case id, method, path template, body, fields the 422 must name)
CASES: list[tuple[str, str, str, Any, set[str]]] = [
    (
        "lead",
        "POST",
        "/leads",
        {
            "first_name": True,  # a boolean for a string
            "company": "C" * 201,  # too long
            "employee_count": "7",  # a string for an integer
            "favourite_colour": "teal",  # unknown
        },  # and no email
        {
            "body.email",
            "body.first_name",
            "body.company",
            "body.employee_count",
            "body.favourite_colour",
        },
    ),
    (
        "lead-nested",
        "POST",
        "/leads",
        lead(
            consent={"email_marketing": "yes", "sms": True},
            capture_type="phone_call",
            captured_at="2026-04-01T09:00:00",
            anonymous_id="",
        ),
        {
            "body.consent.email_marketing",
            "body.consent.sms",
            "body.capture_type",
            "body.captured_at",
            "body.anonymous_id",
        },
    ),
    (
        "touchpoint",
        "POST",
        "/touchpoints",
        {
            "email": True,
            "channel": "web",
            "occurred_at": WHEN,
            "external_id": 7,
            "content_id": "c" * 129,
            "source": "crm",
        },  # and no kind
        {"body.email", "body.external_id", "body.content_id", "body.source", "body.kind"},
    ),
    (
        "touchpoint-enums",
        "POST",
        "/touchpoints",
        {"anonymous_id": "v-1", "channel": "fax", "kind": "hug", "occurred_at": 1775000000},
        {"body.channel", "body.kind", "body.occurred_at"},
    ),
    (
        "campaign",
        "POST",
        "/campaigns",
        {"key": 7, "name": "N" * 201, "cost_centre": True, "budget": 5},  # and no channel
        {"body.key", "body.name", "body.cost_centre", "body.budget", "body.channel"},
    ),
    (
        "campaign-key",
        "POST",
        "/campaigns",
        {"key": "-starts with a dash", "name": "", "channel": "email", "ends_on": "tomorrow"},
        {"body.key", "body.name", "body.ends_on"},
    ),
    (
        "campaign-update",
        "PATCH",
        "/campaigns/{campaign_id}",
        {"name": "", "cost_centre": 5, "key": "renamed", "channel": "web"},
        {"body.name", "body.cost_centre", "body.key", "body.channel"},
    ),
    (
        "territory",
        "POST",
        "/territories",
        {
            "name": "T" * 201,
            "priority": "7",
            "countries": "GB",
            "min_employees": True,
            "colour": "red",
        },
        {
            "body.name",
            "body.priority",
            "body.countries",
            "body.min_employees",
            "body.colour",
        },
    ),
    (
        "territory-missing-name",
        "POST",
        "/territories",
        {"industries": ["i" * 101], "max_employees": 1.5},
        {"body.name", "body.industries.0", "body.max_employees"},
    ),
    (
        "rep",
        "POST",
        "/reps",
        {"name": True, "capacity": "2", "region": "EMEA", "territory_id": "north"},
        {"body.name", "body.email", "body.capacity", "body.region", "body.territory_id"},
    ),
    (
        "rep-long",
        "POST",
        "/reps",
        {"name": "R" * 201, "email": "e" * 255, "capacity": 101},
        {"body.name", "body.email", "body.capacity"},
    ),
    (
        "rep-update",
        "PATCH",
        "/reps/{rep_id}",
        {"capacity": "3", "active": "false", "name": "New name"},
        {"body.capacity", "body.active", "body.name"},
    ),
    (
        "opportunity",
        "POST",
        "/opportunities",
        {k: v for k, v in OPP.items() if k != "opened_at"}
        | {"name": "D" * 201, "stage": 5, "is_closed": "no", "probability": 50},
        {"body.opened_at", "body.name", "body.stage", "body.is_closed", "body.probability"},
    ),
    (
        "opportunity-money",
        "POST",
        "/opportunities",
        OPP | {"amount": True, "currency": "US$", "external_id": "x" * 129},
        {"body.amount", "body.currency", "body.external_id"},
    ),
    (
        "opportunity-update",
        "PATCH",
        "/opportunities/{opportunity_id}",
        {"amount": [1], "is_closed": 1, "stage": "s" * 65, "account_id": str(uuid.uuid4())},
        {"body.amount", "body.is_closed", "body.stage", "body.account_id"},
    ),
    (
        "leads-bulk",
        "POST",
        "/leads/bulk",
        {"leads": "everyone", "notify": True},
        {"body.leads", "body.notify"},
    ),
    (
        "touchpoints-bulk",
        "POST",
        "/touchpoints/bulk",
        {"touchpoints": [TOUCH, 7], "dedupe": False},
        {"body.touchpoints.1", "body.dedupe"},
    ),
]


@pytest.mark.parametrize(
    ("method", "template", "body", "fields"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_bad_write_names_every_bad_field_and_writes_nothing(
    client: TestClient,
    sales: dict[str, str],
    existing: dict[str, Any],
    method: str,
    template: str,
    body: Any,
    fields: set[str],
) -> None:
    before = snapshot(client, sales, existing)
    answer = client.request(method, SALES + template.format(**existing), json=body, headers=sales)
    named = problem(answer)
    assert set(named) == fields, answer.json()
    problem_doc = answer.json()
    assert problem_doc["status"] == 422
    assert problem_doc["type"].endswith("/validation-error")
    assert all(e["message"] for e in problem_doc["errors"])
    assert snapshot(client, sales, existing) == before


def test_an_unknown_field_says_to_remove_it(client: TestClient, sales: dict[str, str]) -> None:
    answer = client.post(f"{SALES}/leads", json=lead(colour="teal"), headers=sales)
    assert problem(answer) == ["body.colour"]
    assert "unknown field" in answer.json()["errors"][0]["message"]


def test_a_bad_scoring_model_is_refused_and_the_old_one_stays(
    client: TestClient, sales: dict[str, str], existing: dict[str, Any]
) -> None:
    document = client.get(f"{SALES}/scoring-model", headers=sales).json()
    before = snapshot(client, sales, existing)
    document["icp"]["fit_threshold"] = "70"
    document["behaviour"]["lookback_days"] = 0
    document["notes"] = "new"
    del document["mql"]
    answer = client.put(f"{SALES}/scoring-model", json=document, headers=sales)
    assert set(problem(answer)) == {
        "body.icp.fit_threshold",
        "body.behaviour.lookback_days",
        "body.notes",
        "body.mql",
    }
    assert snapshot(client, sales, existing) == before


def test_bulk_items_are_strict_too(client: TestClient, sales: dict[str, str]) -> None:
    items = [
        lead_at("strict.example") | {"employee_count": "7", "phone": 5, "consent": "yes"},
        {"email": "ok@strict-two.example", "first_name": "Ok", "company": "Strict Two"},
    ]
    body = created(client.post(f"{SALES}/leads/bulk", json={"leads": items}, headers=sales), 200)
    first, second = body["results"]
    assert first["status"] == 422
    assert {e["field"] for e in first["errors"]} == {
        "body.leads[0].employee_count",
        "body.leads[0].phone",
        "body.leads[0].consent",
    }
    assert second["status"] == 201
    assert contact_by_email(client, sales, "pat@strict.example") is None

    touches = [
        {"anonymous_id": True, "channel": "web", "kind": "web_session", "occurred_at": WHEN},
        {"anonymous_id": "v-9", "channel": "web", "kind": "web_session", "occurred_at": "0.5"},
    ]
    answer = client.post(f"{SALES}/touchpoints/bulk", json={"touchpoints": touches}, headers=sales)
    results = created(answer, 200)["results"]
    assert [r["status"] for r in results] == [422, 422]
    assert [e["field"] for e in results[0]["errors"]] == ["body.touchpoints[0].anonymous_id"]
    assert [e["field"] for e in results[1]["errors"]] == ["body.touchpoints[1].occurred_at"]
    assert all_items(client, sales, CONTACTS) == [
        contact_by_email(client, sales, "ok@strict-two.example")
    ]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/duplicates/{uuid.uuid4()}/approve", "path.decision"),
        ("/duplicates/not-a-uuid/merge", "path.review_id"),
        ("/reps/not-a-uuid", "path.rep_id"),
        ("/opportunities/42", "path.opportunity_id"),
        ("/campaigns/spring", "path.campaign_id"),
    ],
)
def test_bad_path_parameters_are_named(
    client: TestClient, sales: dict[str, str], path: str, field: str
) -> None:
    method = "POST" if path.startswith("/duplicates") else "PATCH"
    answer = client.request(method, SALES + path, json={}, headers=sales)
    assert problem(answer) == [field]


def test_an_unknown_duplicate_review_is_404(client: TestClient, sales: dict[str, str]) -> None:
    problem(client.post(f"{SALES}/duplicates/{uuid.uuid4()}/dismiss", headers=sales), 404)


def test_a_body_that_is_not_json_is_a_400_problem(
    client: TestClient, sales: dict[str, str]
) -> None:
    answer = client.post(
        f"{SALES}/leads",
        content=b'{"email": ',
        headers=sales | {"Content-Type": "application/json"},
    )
    problem(answer, 400)
    assert all_items(client, sales, CONTACTS) == []


def test_a_reader_cannot_write(client: TestClient, auth_headers: Headers) -> None:
    answer = client.post(f"{SALES}/leads", json=lead(), headers=auth_headers("product"))
    problem(answer, 403)


# --- data quality on POST /leads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        (
            {"email": None, "first_name": None, "company": None},
            {"body.email", "body.first_name", "body.company"},
        ),
        (
            {"email": "   ", "first_name": "", "company": " \t "},
            {"body.email", "body.first_name", "body.company"},
        ),
        ({"email": "ada@", "first_name": "  "}, {"body.email", "body.first_name"}),
        ({"email": "ada lovelace@analytical.example"}, {"body.email"}),
        ({"email": "ada@analytical"}, {"body.email"}),
        ({"email": "ada@@analytical.example", "company": ""}, {"body.email", "body.company"}),
    ],
    ids=["missing", "blank", "invalid-and-blank", "space", "no-tld", "double-at"],
)
def test_lead_data_quality_errors_name_every_field_at_once(
    client: TestClient, sales: dict[str, str], change: dict[str, Any], fields: set[str]
) -> None:
    body = {k: v for k, v in (lead() | change).items() if v is not None}
    answer = client.post(f"{SALES}/leads", json=body, headers=sales)
    assert set(problem(answer)) == fields, answer.json()
    assert len(problem(answer)) == len(fields)  # each named once
    assert all_items(client, sales, CONTACTS) == []
    assert all_items(client, sales, "/api/v1/accounts") == []


def test_values_at_their_limits_are_accepted(client: TestClient, sales: dict[str, str]) -> None:
    body = lead(
        first_name="F" * 100,
        last_name="L" * 100,
        company="C" * 200,
        job_title="J" * 200,
        industry="I" * 100,
        lead_source="s" * 64,
        campaign=None,
        anonymous_id="a" * 128,
        employee_count=10_000_000,
    )
    result = capture(client, sales, body)
    profile = client.get(f"{CONTACTS}/{result['contact_id']}", headers=sales).json()
    assert profile["company"] == "C" * 200
    assert profile["lead_source"] == "s" * 64


@pytest.mark.parametrize(
    "change",
    [{"company": ("Maß " * 50)[:200]}, {"industry": "İ" * 100}],
    ids=["company-sharp-s", "industry-dotted-i"],
)
def test_valid_values_that_grow_when_normalised_are_stored(
    client: TestClient, sales: dict[str, str], change: dict[str, str]
) -> None:
    answer = client.post(f"{SALES}/leads", json=lead(**change), headers=sales)
    assert answer.status_code == 201, answer.text


def test_a_refused_single_touchpoint_leaves_no_anonymous_profile(
    client: TestClient, sales: dict[str, str]
) -> None:
    ghost = TOUCH | {"anonymous_id": "ghost-2", "campaign": "no-such-campaign"}
    assert problem(client.post(f"{SALES}/touchpoints", json=ghost, headers=sales)) == [
        "body.campaign"
    ]
    assert all_items(client, sales, CONTACTS) == []


def test_a_touchpoint_whose_meta_holds_an_integer_past_64_bits_is_stored_whole(
    client: TestClient, sales: dict[str, str], session: Session
) -> None:
    """JSON columns are written by orjson, which takes no integer past 64 bits; such a
    value (valid JSON, allowed in ``meta``) is still stored, whole, not answered 500."""
    huge = 123456789012345678901234567890
    touch = TOUCH | {"anonymous_id": "visitor-huge", "meta": {"n": huge}}
    answer = client.post(f"{SALES}/touchpoints", json=touch, headers=sales)
    assert answer.status_code == 201, answer.text
    stored = session.scalar(
        select(Touchpoint.meta).where(Touchpoint.id == uuid.UUID(answer.json()["id"]))
    )
    assert stored == {"n": huge}
