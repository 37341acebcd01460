"""One profile per person: the same person by two routes, anonymous visitors identified,
identities, consent and the lifecycle through the contacts API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

SALES = "/api/v1/integrations/sales"
CONTACTS = "/api/v1/contacts"
Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


def lead(**fields: Any) -> dict[str, Any]:
    return {"email": "lin@beacon.example", "first_name": "Lin", "company": "Beacon"} | fields


def visit(client: TestClient, headers: dict[str, str], visitor: str, kind: str) -> str:
    answer = client.post(
        f"{SALES}/touchpoints",
        json={
            "anonymous_id": visitor,
            "channel": "web",
            "kind": kind,
            "occurred_at": "2026-11-01T10:00:00Z",
        },
        headers=headers,
    )
    assert answer.status_code == 201, answer.text
    contact_id: str = answer.json()["contact_id"]
    return contact_id


def test_an_anonymous_visitor_who_fills_a_form_keeps_their_history(
    client: TestClient, sales: dict[str, str]
) -> None:
    visitor = visit(client, sales, "anon-42", "web_session")
    visit(client, sales, "anon-42", "content_download")
    assert client.get(f"{CONTACTS}/{visitor}", headers=sales).json()["stage"] == "anonymous"
    answer = client.post(f"{SALES}/leads", json=lead(anonymous_id="anon-42"), headers=sales)
    steps = answer.json()["steps"]
    assert answer.json()["contact_id"] == visitor
    assert steps["deduplication"]["outcome"] == "identified"
    assert steps["scoring"]["web_sessions"] == 1
    profile = client.get(f"{CONTACTS}/{visitor}", headers=sales).json()
    assert profile["email"] == "lin@beacon.example"
    assert [h["to_stage"] for h in profile["stage_history"]] == ["anonymous", "lead"]
    assert {i["kind"] for i in profile["identities"]} == {"anonymous", "email"}


def test_a_known_person_browsing_anonymously_merges_into_one_profile(
    client: TestClient, sales: dict[str, str]
) -> None:
    known = client.post(f"{SALES}/leads", json=lead(), headers=sales).json()["contact_id"]
    visitor = visit(client, sales, "anon-7", "web_session")
    answer = client.post(
        f"{SALES}/leads", json=lead(anonymous_id="anon-7", job_title="CTO"), headers=sales
    ).json()
    assert answer["contact_id"] == known
    assert answer["steps"]["deduplication"]["outcome"] == "merged"
    assert answer["steps"]["deduplication"]["merged_contact_ids"] == [visitor]
    merged = client.get(f"{CONTACTS}/{visitor}", headers=sales).json()
    assert merged["id"] == known and merged["job_title"] == "CTO"
    assert answer["steps"]["scoring"]["web_sessions"] == 1
    listed = client.get(CONTACTS, params={"email": "LIN@beacon.example"}, headers=sales).json()
    assert [c["id"] for c in listed["items"]] == [known]


def test_a_crm_identity_already_on_another_profile_merges_them(
    client: TestClient, sales: dict[str, str]
) -> None:
    first = client.post(f"{SALES}/leads", json=lead(), headers=sales).json()["contact_id"]
    second = client.post(
        f"{SALES}/leads", json=lead(email="lin.w@beacon.example"), headers=sales
    ).json()["contact_id"]
    for contact in (first, second):
        added = client.post(
            f"{CONTACTS}/{contact}/identities",
            json={"kind": "crm:hubspot", "value": "hs-1001"},
            headers=sales,
        )
        assert added.status_code == 200, added.text
    assert added.json()["id"] == first
    assert client.get(f"{CONTACTS}/{second}", headers=sales).json()["id"] == first


def test_consent_is_recorded_per_purpose_with_source_and_time(
    client: TestClient, sales: dict[str, str]
) -> None:
    answer = client.post(
        f"{SALES}/leads", json=lead(consent={"email_marketing": True}), headers=sales
    ).json()
    assert answer["steps"]["follow_up"]["sequence"] == "nurture:form_submission"
    contact = answer["contact_id"]
    withdrawn = client.post(
        f"{CONTACTS}/{contact}/consent",
        json={"purpose": "email_marketing", "granted": False, "source": "unsubscribe link"},
        headers=sales,
    )
    assert withdrawn.status_code == 201
    consent = {c["purpose"]: c for c in withdrawn.json()["consent"]}
    assert consent["email_marketing"]["granted"] is False
    assert consent["email_marketing"]["source"] == "unsubscribe link"
    again = client.post(f"{SALES}/leads", json=lead(), headers=sales).json()
    assert again["steps"]["follow_up"]["sequence"] is None


def test_stages_move_forward_and_refuse_going_back(
    client: TestClient, sales: dict[str, str]
) -> None:
    contact = client.post(f"{SALES}/leads", json=lead(), headers=sales).json()["contact_id"]
    to_sql = client.post(
        f"{CONTACTS}/{contact}/stage", json={"stage": "sql", "reason": "accepted"}, headers=sales
    )
    assert to_sql.status_code == 200 and to_sql.json()["stage"] == "sql"
    back = client.post(
        f"{CONTACTS}/{contact}/stage", json={"stage": "lead", "reason": "oops"}, headers=sales
    )
    assert back.status_code == 409
    assert back.headers["content-type"] == "application/problem+json"
    out = client.post(
        f"{CONTACTS}/{contact}/stage",
        json={"stage": "disqualified", "reason": "student"},
        headers=sales,
    )
    assert out.json()["stage"] == "disqualified"
    history = [h["to_stage"] for h in out.json()["stage_history"]]
    assert history == ["lead", "sql", "disqualified"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("stage", {"stage": "vip", "reason": "x"}, "body.stage"),
        ("stage", {"stage": "sql"}, "body.reason"),
        ("consent", {"purpose": "sms", "granted": True, "source": "x"}, "body.purpose"),
        ("consent", {"purpose": "tracking", "granted": "yes", "source": "x"}, "body.granted"),
        ("identities", {"kind": "twitter", "value": "x"}, "body.kind"),
        ("identities", {"kind": "anonymous", "value": ""}, "body.value"),
    ],
)
def test_bad_contact_writes_name_the_field(
    client: TestClient, sales: dict[str, str], path: str, body: dict[str, Any], field: str
) -> None:
    contact = client.post(f"{SALES}/leads", json=lead(), headers=sales).json()["contact_id"]
    answer = client.post(f"{CONTACTS}/{contact}/{path}", json=body, headers=sales)
    assert answer.status_code == 422
    assert field in {e["field"] for e in answer.json()["errors"]}


def test_unknown_contact_is_404(client: TestClient, sales: dict[str, str]) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"{CONTACTS}/{missing}", headers=sales).status_code == 404


def test_marketing_follow_up_is_capped_at_three_a_week(
    client: TestClient, sales: dict[str, str]
) -> None:
    sequences = []
    for day in (1, 2, 3, 4, 9):
        answer = client.post(
            f"{SALES}/leads",
            json=lead(consent={"email_marketing": True}, captured_at=f"2026-11-0{day}T10:00:00Z"),
            headers=sales,
        ).json()
        sequences.append(answer["steps"]["follow_up"]["sequence"])
    assert sequences[:3] == ["nurture:form_submission"] * 3
    assert sequences[3] is None  # a fourth within 7 days
    assert sequences[4] == "nurture:form_submission"  # day 9: two of the three fell out
