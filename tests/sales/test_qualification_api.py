"""Scores and stages follow seed 004's MQL criteria exactly, through the API; crossing into
MQL reaches sales as a notification through the alert consumer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from revhub.core.db import Database
from revhub.core.events.bus import Bus
from revhub.sales.jobs import alerts_consumer
from tests.eventing import deliver_all

SALES = "/api/v1/integrations/sales"
Headers = Callable[[str], dict[str, str]]
NOW = datetime.now(UTC)


def icp_lead(email: str = "grace@navy.example", **fields: Any) -> dict[str, Any]:
    """A lead that fits the default ICP: US, software, 250 people, a VP, business e-mail."""
    return {
        "email": email,
        "first_name": "Grace",
        "last_name": "Hopper",
        "company": "Navy Systems",
        "job_title": "VP Engineering",
        "country": "US",
        "industry": "software",
        "employee_count": 250,
        "lead_source": "organic",
        "captured_at": (NOW - timedelta(minutes=5)).isoformat(),
    } | fields


def touches(email: str, kind: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "email": email,
            "channel": "email" if kind.startswith("email") else "web",
            "kind": kind,
            "occurred_at": (NOW - timedelta(minutes=1)).isoformat(),
            **({"content_id": f"{extra['content']}-{i}"} if "content" in extra else {}),
        }
        for i in range(n)
    ]


def engaged(email: str, *, clicks: int = 4, content: int = 3, sessions: int = 5) -> list[Any]:
    """Four clicks = e-mail engagement 80 (20 each, seed 004 needs ≥ 70)."""
    return [
        *touches(email, "email_click", clicks),
        *touches(email, "content_download", content, content="guide"),
        *touches(email, "web_session", sessions),
    ]


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


def capture(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    answer = client.post(f"{SALES}/leads", json=icp_lead(**fields), headers=headers)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def send(client: TestClient, headers: dict[str, str], items: list[Any]) -> dict[str, Any]:
    answer = client.post(f"{SALES}/touchpoints/bulk", json={"touchpoints": items}, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["rejected"] == 0, body
    return body


def stage_of(client: TestClient, headers: dict[str, str], contact_id: str) -> str:
    stage: str = client.get(f"/api/v1/contacts/{contact_id}", headers=headers).json()["stage"]
    return stage


def test_all_four_criteria_make_an_mql(client: TestClient, sales: dict[str, str]) -> None:
    lead = capture(client, sales)
    assert lead["steps"]["scoring"]["icp_fit"] is True
    send(client, sales, engaged("grace@navy.example"))
    assert stage_of(client, sales, lead["contact_id"]) == "mql"
    score = client.get(f"{SALES}/scores/{lead['contact_id']}", headers=sales).json()
    assert score["score"]["email_engagement"] == 80
    assert score["score"]["content_pieces"] == 3
    assert score["score"]["web_sessions"] == 5
    rules = {r["rule"] for r in score["history"][0]["reasons"]}
    assert {"fit.country", "behaviour.email_click", "behaviour.web_session"} <= rules


@pytest.mark.parametrize(
    ("missing", "touchpoints", "fields"),
    [
        ("email engagement 60 < 70", {"clicks": 3}, {}),
        ("2 content pieces < 3", {"content": 2}, {}),
        ("4 sessions < 5", {"sessions": 4}, {}),
        ("not the ICP", {}, {"country": "BR", "industry": "mining", "employee_count": 5}),
    ],
)
def test_one_criterion_short_is_no_mql(
    client: TestClient,
    sales: dict[str, str],
    missing: str,
    touchpoints: dict[str, int],
    fields: dict[str, Any],
) -> None:
    lead = capture(client, sales, **fields)
    send(client, sales, engaged("grace@navy.example", **touchpoints))
    assert stage_of(client, sales, lead["contact_id"]) == "lead", missing


def test_the_same_content_piece_twice_counts_once(
    client: TestClient, sales: dict[str, str]
) -> None:
    lead = capture(client, sales)
    again = touches("grace@navy.example", "content_download", 2, content="same")
    for item in again:
        item["content_id"] = "same-guide"
    send(client, sales, [*engaged("grace@navy.example", content=1), *again])  # 2 distinct
    assert stage_of(client, sales, lead["contact_id"]) == "lead"


def test_old_engagement_decays_by_the_half_life(client: TestClient, sales: dict[str, str]) -> None:
    """Four clicks 30 days ago (the default half-life) are worth 4 * 10 = 40, not 80."""
    lead = capture(client, sales)
    old = touches("grace@navy.example", "email_click", 4)
    for item in old:
        item["occurred_at"] = (NOW - timedelta(days=30)).isoformat()
    send(client, sales, old)
    score = client.get(f"{SALES}/scores/{lead['contact_id']}", headers=sales).json()["score"]
    assert score["email_engagement"] == 40


def test_an_mql_notifies_sales_through_the_alert_consumer(
    client: TestClient, sales: dict[str, str], bus: Bus
) -> None:
    territory = client.post(
        f"{SALES}/territories", json={"name": "North America", "regions": ["NA"]}, headers=sales
    ).json()
    rep = client.post(
        f"{SALES}/reps",
        json={"name": "Rita Rep", "email": "rita@revhub.example", "territory_id": territory["id"]},
        headers=sales,
    ).json()
    lead = capture(client, sales)
    assert lead["steps"]["assignment"]["rep_id"] == rep["id"]
    send(client, sales, engaged("grace@navy.example"))
    consumer = alerts_consumer()
    assert deliver_all(bus, consumer) >= 1
    listed = client.get(f"{SALES}/notifications", params={"rep_id": rep["id"]}, headers=sales)
    notes = listed.json()["items"]
    assert [n["contact_id"] for n in notes] == [lead["contact_id"]]
    assert "Navy Systems" in notes[0]["message"]
    assert deliver_all(bus, consumer) == 0


def test_the_scoring_model_is_editable(client: TestClient, sales: dict[str, str]) -> None:
    model = client.get(f"{SALES}/scoring-model", headers=sales)
    assert model.headers["X-Model-Version"] == "0"
    document = model.json()
    document["mql"]["web_sessions"] = 2
    put = client.put(f"{SALES}/scoring-model", json=document, headers=sales)
    assert put.status_code == 200, put.text
    assert put.headers["X-Model-Version"] == "1"
    lead = capture(client, sales)
    send(client, sales, engaged("grace@navy.example", sessions=2))
    assert stage_of(client, sales, lead["contact_id"]) == "mql"


def test_each_new_version_of_the_model_takes_effect(
    client: TestClient, sales: dict[str, str]
) -> None:
    """The hub keeps the model it read; a newer version replaces it at once."""
    document = client.get(f"{SALES}/scoring-model", headers=sales).json()
    for version, sessions in ((1, 2), (2, 9)):
        document["mql"]["web_sessions"] = sessions
        put = client.put(f"{SALES}/scoring-model", json=document, headers=sales)
        assert put.headers["X-Model-Version"] == str(version)
    lead = capture(client, sales)
    send(client, sales, engaged("grace@navy.example", sessions=5))
    assert stage_of(client, sales, lead["contact_id"]) == "lead"  # version 2 wants 9
    send(client, sales, engaged("grace@navy.example", clicks=0, content=0, sessions=4))
    assert stage_of(client, sales, lead["contact_id"]) == "mql"


def test_a_stored_model_is_kept_until_a_new_version_is_stored(
    client: TestClient, sales: dict[str, str], db: Database
) -> None:
    document = client.get(f"{SALES}/scoring-model", headers=sales).json()
    document["mql"]["web_sessions"] = 4
    client.put(f"{SALES}/scoring-model", json=document, headers=sales)
    capture(client, sales)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        capture(client, sales, email="ada@navy.example")
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert any("FROM reference_version" in s for s in statements)
    assert not [s for s in statements if "FROM scoring_model" in s]
    document["mql"]["web_sessions"] = 3
    client.put(f"{SALES}/scoring-model", json=document, headers=sales)
    statements.clear()
    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        grace = capture(client, sales, email="grace@navy.example")
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert [s for s in statements if "scoring_model.document" in s]
    score = client.get(f"{SALES}/scores/{grace['contact_id']}", headers=sales).json()["score"]
    assert score["model_version"] == 2


def test_a_broken_scoring_model_is_refused(client: TestClient, sales: dict[str, str]) -> None:
    document = client.get(f"{SALES}/scoring-model", headers=sales).json()
    document["fit_points"]["country"] = 90
    document["total_weights"]["fit"] = "half"
    put = client.put(f"{SALES}/scoring-model", json=document, headers=sales)
    assert put.status_code == 422
    fields = {e["field"] for e in put.json()["errors"]}
    assert "body.total_weights.fit" in fields
    assert client.get(f"{SALES}/scoring-model", headers=sales).headers["X-Model-Version"] == "0"
