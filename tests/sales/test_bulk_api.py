"""Bulk lead capture and bulk touchpoints through the HTTP API: each item is judged alone and
reported at its index, good items land, bad ones leave nothing; plus Idempotency-Key on the
single-lead route."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from revhub.sales.models import LeadCapture
from tests.sales.factories import (
    CONTACTS,
    SALES,
    Headers,
    capture,
    contact_by_email,
    created,
    lead,
    lead_at,
    problem,
    unique,
)

LEADS = f"{SALES}/leads"
TOUCHPOINTS = f"{SALES}/touchpoints"


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


def contact_count(client: TestClient, headers: dict[str, str]) -> int:
    page = created(client.get(CONTACTS, params={"limit": 500}, headers=headers), 200)
    return len(page["items"])


def errors_of(item: dict[str, Any]) -> list[str]:
    return [e["field"] for e in item["errors"]]


def recent(minutes: int = 5) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


# --- /leads/bulk -----------------------------------------------------------------------------


def test_bulk_leads_report_each_item_and_keep_the_good_ones(
    client: TestClient, sales: dict[str, str]
) -> None:
    created(
        client.post(
            f"{SALES}/campaigns",
            json={"key": "spring-webinar", "name": "Spring", "channel": "webinar"},
            headers=sales,
        )
    )
    items = [
        lead_at("good-one.example", local="first"),
        {k: v for k, v in lead_at("missing.example").items() if k != "email"},
        lead_at("x.example") | {"email": "not an e-mail"},
        lead_at("typed.example", local="typed") | {"employee_count": "7"},
        lead_at("extra.example", local="extra") | {"favourite_colour": "teal"},
        lead_at("nocamp.example", local="nocamp") | {"campaign": "no-such-campaign"},
        lead_at("good-two.example", local="second") | {"campaign": "spring-webinar"},
        lead_at("blank.example", local="blank") | {"first_name": "  ", "company": ""},
    ]
    answer = client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales)
    body = created(answer, 200)
    assert (body["accepted"], body["rejected"]) == (2, 6)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(8))
    assert [r["status"] for r in results] == [201, 422, 422, 422, 422, 422, 201, 422]
    assert errors_of(results[1]) == ["body.leads[1].email"]
    assert errors_of(results[2]) == ["body.leads[2].email"]
    assert errors_of(results[3]) == ["body.leads[3].employee_count"]
    assert errors_of(results[4]) == ["body.leads[4].favourite_colour"]
    assert errors_of(results[5]) == ["body.leads[5].campaign"]
    assert sorted(errors_of(results[7])) == ["body.leads[7].company", "body.leads[7].first_name"]
    for bad in (results[i] for i in (1, 2, 3, 4, 5, 7)):
        assert bad["result"] is None
        assert all(e["message"] for e in bad["errors"])

    good = {0: "first@good-one.example", 6: "second@good-two.example"}
    for index, email in good.items():
        found = contact_by_email(client, sales, email)
        assert found is not None, email
        assert found["id"] == results[index]["result"]["contact_id"]
        assert found["stage"] == "lead"
    for email in (
        "typed@typed.example",
        "extra@extra.example",
        "nocamp@nocamp.example",
        "blank@blank.example",
    ):
        assert contact_by_email(client, sales, email) is None, email
    assert contact_count(client, sales) == 2
    accounts = client.get("/api/v1/accounts", headers=sales).json()["items"]
    assert sorted(a["domain"] for a in accounts) == ["good-one.example", "good-two.example"]


def test_the_same_person_twice_in_one_batch_is_one_profile(
    client: TestClient, sales: dict[str, str]
) -> None:
    items = [lead(), lead(email="ADA.LOVELACE@analytical.example", job_title="CTO")]
    results = created(client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales), 200)
    first, second = (r["result"] for r in results["results"])
    assert first["contact_id"] == second["contact_id"]
    assert first["steps"]["deduplication"]["outcome"] == "created"
    assert second["steps"]["deduplication"]["outcome"] == "updated"
    assert contact_count(client, sales) == 1


def test_a_batch_sees_what_its_earlier_leads_did(client: TestClient, sales: dict[str, str]) -> None:
    """The batch reads people, consent and sequences once up front; each lead must still see
    the people, identities, consent and sequences the leads before it created."""
    visitor = unique("visitor-")
    consenting = {"consent": {"email_marketing": True}}
    items = [
        lead_at("batch-one.example", anonymous_id=visitor),
        *(lead_at("batch-one.example", capture_type="webinar_registration", **consenting),) * 4,
        lead_at("batch-one.example", local="sam"),
        lead_at("batch-one.example", local="sam", anonymous_id=visitor),
    ]
    answer = created(client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales), 200)
    results = [r["result"] for r in answer["results"]]
    outcomes = [r["steps"]["deduplication"]["outcome"] for r in results]
    assert outcomes == ["created", "updated", "updated", "updated", "updated", "created", "merged"]
    assert len({r["contact_id"] for r in results[:5]}) == 1
    assert results[6]["contact_id"] == results[0]["contact_id"]
    assert results[6]["steps"]["deduplication"]["merged_contact_ids"] == [results[5]["contact_id"]]
    sequences = [r["steps"]["follow_up"]["sequence"] for r in results]
    assert sequences[0] is None  # no consent yet
    assert sequences[1:4] == ["nurture:webinar_registration"] * 3
    assert sequences[4] is None and "frequency cap" in results[4]["steps"]["follow_up"]["reason"]
    assert contact_count(client, sales) == 1


def test_a_batch_merges_into_an_older_anonymous_visitor(
    client: TestClient, sales: dict[str, str]
) -> None:
    """The visitor browsed first (older, anonymous, never scored), the e-mail was captured
    later; a form that names both merges them into the visitor's profile, which gets its
    first score mid-batch, and the next lead of the batch finds the survivor."""
    visitor = unique("browser-")
    touch = {"anonymous_id": visitor, "channel": "web", "kind": "web_session"}
    answer = client.post(
        f"{TOUCHPOINTS}/bulk",
        json={"touchpoints": [touch | {"occurred_at": recent()}]},
        headers=sales,
    )
    anonymous = created(answer, 200)["results"][0]["contact_id"]
    known = capture(client, sales, lead_at("late-form.example", local="kim"))
    items = [
        lead_at("late-form.example", local="kim", anonymous_id=visitor),
        lead_at("late-form.example", local="kim", job_title="CFO"),
    ]
    answer = created(client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales), 200)
    merged, again = (r["result"] for r in answer["results"])
    assert merged["steps"]["deduplication"]["outcome"] == "merged"
    assert merged["contact_id"] == again["contact_id"] == anonymous
    assert merged["steps"]["deduplication"]["merged_contact_ids"] == [known["contact_id"]]
    assert again["steps"]["deduplication"]["outcome"] == "updated"
    assert again["steps"]["scoring"]["web_sessions"] == 1
    score = created(client.get(f"{SALES}/scores/{anonymous}", headers=sales), 200)
    assert score["score"]["total"] == again["steps"]["scoring"]["total"]


def test_a_batch_flags_a_colleague_it_created_itself(
    client: TestClient, sales: dict[str, str]
) -> None:
    items = [
        lead(email="ada@twins.example", company="Twins Ltd"),
        lead(email="a.lovelace@twins.example", company="Twins Limited"),
    ]
    answer = created(client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales), 200)
    first, second = (r["result"] for r in answer["results"])
    flagged = second["steps"]["deduplication"]["possible_duplicates"]
    assert [f["contact_id"] for f in flagged] == [first["contact_id"]]
    assert first["steps"]["deduplication"]["possible_duplicates"] == []


def test_an_item_that_is_not_an_object_is_refused_alone(
    client: TestClient, sales: dict[str, str]
) -> None:
    answer = client.post(f"{LEADS}/bulk", json={"leads": [lead(), "ada"]}, headers=sales)
    # The body's schema says each item is an object: the whole request is refused.
    assert problem(answer) == ["body.leads.1"]
    assert contact_count(client, sales) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"leads": []}, "body.leads"),
        ({"leads": [{"email": f"p{n}@bulk.example"} for n in range(1001)]}, "body.leads"),
        ({"leads": {"email": "a@b.example"}}, "body.leads"),
        ({}, "body.leads"),
        ({"leads": [lead()], "dry_run": True}, "body.dry_run"),
    ],
    ids=["empty", "1001", "not-a-list", "missing", "unknown-field"],
)
def test_a_bad_batch_is_refused_whole(
    client: TestClient, sales: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert problem(client.post(f"{LEADS}/bulk", json=body, headers=sales)) == [field]
    assert contact_count(client, sales) == 0


def test_a_thousand_leads_are_accepted(client: TestClient, sales: dict[str, str]) -> None:
    items = [
        {"email": f"p{n}@gmail.com", "first_name": "P", "company": f"C{n}"} for n in range(1000)
    ]
    body = created(client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales), 200)
    assert (body["accepted"], body["rejected"]) == (1000, 0)
    assert contact_by_email(client, sales, "p999@gmail.com") is not None


def test_the_ids_of_a_batch_rise_in_its_order(client: TestClient, sales: dict[str, str]) -> None:
    """Row ids are UUIDv7 (``core.db.new_id``): rows stored together sit together in each
    index on their id, and a later row's id sorts after an earlier one's."""
    items = [
        {"email": f"r{n}@rise.example", "first_name": "R", "company": "Rise"} for n in range(50)
    ]
    body = created(client.post(f"{LEADS}/bulk", json={"leads": items}, headers=sales), 200)
    for key in ("lead_id", "contact_id"):
        ids = [uuid.UUID(item["result"][key]) for item in body["results"]]
        assert {i.version for i in ids} == {7}
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


# --- /touchpoints/bulk -----------------------------------------------------------------------


def test_bulk_touchpoints_report_each_item(client: TestClient, sales: dict[str, str]) -> None:
    person = capture(client, sales, lead_at("touch.example", local="tess"))
    email = "tess@touch.example"
    at = recent()
    items = [
        {"email": email, "channel": "web", "kind": "web_session", "occurred_at": at,
         "external_id": "ga-1"},
        {"email": email, "channel": "web", "kind": "web_session", "occurred_at": at,
         "external_id": "ga-1"},  # the same touchpoint again
        {"email": "nobody@touch.example", "channel": "web", "kind": "web_session",
         "occurred_at": at},
        {"email": email, "kind": "web_session", "occurred_at": at},  # no channel
        {"email": email, "channel": "web", "kind": "web_session",
         "occurred_at": "2026-01-01T10:00:00"},  # naive
        {"channel": "web", "kind": "web_session", "occurred_at": at},  # nobody named
        {"email": email, "channel": "web", "kind": "web_session", "occurred_at": at,
         "campaign": "nope"},
        {"contact_id": person["contact_id"], "channel": "email", "kind": "email_open",
         "occurred_at": at, "external_id": "esp-9"},
        {"anonymous_id": "visitor-42", "channel": "web", "kind": "web_session",
         "occurred_at": at},
        {"email": email, "channel": "fax", "kind": "web_session", "occurred_at": at},
    ]  # fmt: skip
    body = created(
        client.post(f"{TOUCHPOINTS}/bulk", json={"touchpoints": items}, headers=sales), 200
    )
    results = body["results"]
    assert [r["status"] for r in results] == [201, 200, 422, 422, 422, 422, 422, 201, 201, 422]
    assert (body["accepted"], body["rejected"]) == (4, 6)
    assert results[1]["id"] == results[0]["id"]
    assert results[0]["contact_id"] == results[7]["contact_id"] == person["contact_id"]
    assert errors_of(results[2]) == ["body.touchpoints[2].email"]
    assert errors_of(results[3]) == ["body.touchpoints[3].channel"]
    assert errors_of(results[4]) == ["body.touchpoints[4].occurred_at"]
    assert errors_of(results[5]) == ["body.touchpoints[5]"]
    assert errors_of(results[6]) == ["body.touchpoints[6].campaign"]
    assert errors_of(results[9]) == ["body.touchpoints[9].channel"]

    # What landed counts in the score: one web session (not two), one e-mail open.
    score = created(client.get(f"{SALES}/scores/{person['contact_id']}", headers=sales), 200)
    assert score["score"]["web_sessions"] == 1
    assert score["score"]["email_engagement"] == 10
    # The unknown visitor now has an anonymous profile.
    visitor = created(client.get(f"{CONTACTS}/{results[8]['contact_id']}", headers=sales), 200)
    assert visitor["stage"] == "anonymous"
    assert {"kind": "anonymous", "value": "visitor-42"} in visitor["identities"]


def test_a_repeated_external_id_answers_the_first_touchpoint(
    client: TestClient, sales: dict[str, str]
) -> None:
    person = capture(client, sales, lead_at("again.example", local="abe"))
    one = {
        "contact_id": person["contact_id"],
        "channel": "web",
        "kind": "web_session",
        "occurred_at": recent(),
        "external_id": "sess-77",
    }
    first = created(
        client.post(f"{TOUCHPOINTS}/bulk", json={"touchpoints": [one]}, headers=sales), 200
    )
    again = created(
        client.post(f"{TOUCHPOINTS}/bulk", json={"touchpoints": [one]}, headers=sales), 200
    )
    assert first["results"][0]["status"] == 201
    assert again["results"][0]["status"] == 200
    assert again["results"][0]["id"] == first["results"][0]["id"]
    single = client.post(TOUCHPOINTS, json=one, headers=sales)
    assert single.status_code == 200, single.text
    assert single.json()["id"] == first["results"][0]["id"]
    score = client.get(f"{SALES}/scores/{person['contact_id']}", headers=sales).json()
    assert score["score"]["web_sessions"] == 1


def test_a_refused_touchpoint_leaves_no_anonymous_profile(
    client: TestClient, sales: dict[str, str]
) -> None:
    ghost = {
        "anonymous_id": "ghost-1",
        "campaign": "no-such-campaign",
        "channel": "web",
        "kind": "web_session",
        "occurred_at": recent(),
    }
    body = created(
        client.post(f"{TOUCHPOINTS}/bulk", json={"touchpoints": [ghost]}, headers=sales), 200
    )
    assert errors_of(body["results"][0]) == ["body.touchpoints[0].campaign"]
    assert contact_count(client, sales) == 0


def visits(count: int) -> list[dict[str, Any]]:
    return [
        {"anonymous_id": f"v{n}", "channel": "web", "kind": "web_session", "occurred_at": recent()}
        for n in range(count)
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"touchpoints": []}, "body.touchpoints"),
        ({"touchpoints": visits(1001)}, "body.touchpoints"),
        ({"touchpoints": "all"}, "body.touchpoints"),
        ({"touchpoints": visits(1), "mode": "fast"}, "body.mode"),
    ],
    ids=["empty", "1001", "not-a-list", "unknown-field"],
)
def test_a_bad_touchpoint_batch_is_refused_whole(
    client: TestClient, sales: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert problem(client.post(f"{TOUCHPOINTS}/bulk", json=body, headers=sales)) == [field]
    assert contact_count(client, sales) == 0


# --- Idempotency-Key -------------------------------------------------------------------------


def captures(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(LeadCapture)) or 0


def test_a_retry_with_the_same_key_replays_the_first_answer(
    client: TestClient, sales: dict[str, str], session: Session
) -> None:
    headers = sales | {"Idempotency-Key": "form-123"}
    first = client.post(LEADS, json=lead(), headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = client.post(LEADS, json=lead(), headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert captures(session) == 1

    # Without the key the same lead is simply captured again.
    plain = created(client.post(LEADS, json=lead(), headers=sales))
    assert plain["steps"]["deduplication"]["outcome"] == "updated"
    assert captures(session) == 2


def test_the_same_key_with_another_body_is_refused(
    client: TestClient, sales: dict[str, str], session: Session
) -> None:
    headers = sales | {"Idempotency-Key": "form-124"}
    created(client.post(LEADS, json=lead(), headers=headers))
    other = client.post(LEADS, json=lead(first_name="Augusta"), headers=headers)
    assert problem(other) == ["header.Idempotency-Key"]
    assert captures(session) == 1
    assert contact_by_email(client, sales, "ada.lovelace@analytical.example")["first_name"] == "Ada"


def test_keys_belong_to_one_credential(
    client: TestClient, auth_headers: Headers, session: Session
) -> None:
    mine = auth_headers("sales") | {"Idempotency-Key": "shared-key"}
    theirs = auth_headers("sales") | {"Idempotency-Key": "shared-key"}
    first = created(client.post(LEADS, json=lead(), headers=mine))
    answer = client.post(LEADS, json=lead(), headers=theirs)
    assert answer.status_code == 201, answer.text
    assert "Idempotent-Replayed" not in answer.headers
    assert answer.json()["steps"]["deduplication"]["outcome"] == "updated"
    assert answer.json()["contact_id"] == first["contact_id"]
    assert captures(session) == 2
    # Each credential's retry replays its own answer.
    mine_again = client.post(LEADS, json=lead(), headers=mine)
    assert mine_again.headers["Idempotent-Replayed"] == "true"
    assert mine_again.json() == first
    theirs_again = client.post(LEADS, json=lead(), headers=theirs)
    assert theirs_again.json() == answer.json()
    assert captures(session) == 2


def test_a_key_is_scoped_to_its_route(client: TestClient, sales: dict[str, str]) -> None:
    headers = sales | {"Idempotency-Key": "k-1"}
    person = created(client.post(LEADS, json=lead(), headers=headers))
    touch = {
        "contact_id": person["contact_id"],
        "channel": "web",
        "kind": "web_session",
        "occurred_at": recent(),
    }
    answer = client.post(TOUCHPOINTS, json=touch, headers=headers)
    assert answer.status_code == 201, answer.text
    assert "Idempotent-Replayed" not in answer.headers


def test_a_refused_request_does_not_use_up_its_key(
    client: TestClient, sales: dict[str, str], session: Session
) -> None:
    headers = sales | {"Idempotency-Key": "retry-after-fix"}
    body = lead(campaign="autumn")
    assert problem(client.post(LEADS, json=body, headers=headers)) == ["body.campaign"]
    created(
        client.post(
            f"{SALES}/campaigns",
            json={"key": "autumn", "name": "Autumn", "channel": "email"},
            headers=sales,
        )
    )
    answer = client.post(LEADS, json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    assert "Idempotent-Replayed" not in answer.headers
    assert captures(session) == 1


def test_bulk_requests_replay_too(
    client: TestClient, sales: dict[str, str], session: Session
) -> None:
    headers = sales | {"Idempotency-Key": "batch-7"}
    batch = {"leads": [lead_at(f"{unique('b')}.example") for _ in range(3)]}
    first = created(client.post(f"{LEADS}/bulk", json=batch, headers=headers), 200)
    again = client.post(f"{LEADS}/bulk", json=batch, headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first
    assert captures(session) == 3


def test_a_bulk_retry_with_keys_in_another_order_replays(
    client: TestClient, sales: dict[str, str], session: Session
) -> None:
    item = lead_at("order.example")
    same_item = dict(reversed(list(item.items())))  # the same JSON object
    single = sales | {"Idempotency-Key": "one-order"}
    created(client.post(LEADS, json=item, headers=single))
    assert client.post(LEADS, json=same_item, headers=single).headers["Idempotent-Replayed"]

    headers = sales | {"Idempotency-Key": "bulk-order"}
    first = created(client.post(f"{LEADS}/bulk", json={"leads": [item]}, headers=headers), 200)
    again = client.post(f"{LEADS}/bulk", json={"leads": [same_item]}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_a_malformed_key_is_refused(
    client: TestClient, sales: dict[str, str], session: Session, key: str
) -> None:
    answer = client.post(LEADS, json=lead(), headers=sales | {"Idempotency-Key": key})
    assert problem(answer) == ["header.Idempotency-Key"]
    assert captures(session) == 0


def test_a_replay_repeats_the_first_status(client: TestClient, sales: dict[str, str]) -> None:
    person = capture(client, sales, lead_at("status.example", local="sid"))
    touch = {
        "contact_id": person["contact_id"],
        "channel": "web",
        "kind": "web_session",
        "occurred_at": recent(),
        "external_id": "known-1",
    }
    created(client.post(TOUCHPOINTS, json=touch, headers=sales))
    headers = sales | {"Idempotency-Key": "tp-retry"}
    first = client.post(TOUCHPOINTS, json=touch, headers=headers)
    assert first.status_code == 200, first.text
    again = client.post(TOUCHPOINTS, json=touch, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.status_code == first.status_code
