"""Lead capture through the HTTP API, as a form tool or a user would send it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from revhub.core.events.models import OutboxEvent

LEADS = "/api/v1/integrations/sales/leads"
Headers = Callable[[str], dict[str, str]]


def lead(**fields: Any) -> dict[str, Any]:
    body = {
        "email": "Ada.Lovelace@Analytical.example",
        "first_name": "ada",
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


def test_a_lead_runs_the_six_steps(client: TestClient, auth_headers: Headers) -> None:
    answer = client.post(LEADS, json=lead(), headers=auth_headers("sales"))
    assert answer.status_code == 201, answer.text
    steps = answer.json()["steps"]
    assert list(steps) == [
        "validation",
        "deduplication",
        "scoring",
        "crm",
        "assignment",
        "follow_up",
    ]
    assert steps["deduplication"]["outcome"] == "created"
    assert "email: lower-cased" in " ".join(steps["validation"]["transformations"])
    assert steps["scoring"]["stage"] == "lead"
    assert steps["scoring"]["fit"] == 100
    assert steps["crm"]["status"] == "queued_for_crm_sync"
    assert steps["assignment"]["queued"] is True
    assert steps["follow_up"]["sequence"] is None


def test_the_same_person_twice_is_one_profile(client: TestClient, auth_headers: Headers) -> None:
    headers = auth_headers("sales")
    first = client.post(LEADS, json=lead(), headers=headers).json()
    again_in = lead(email="ADA.LOVELACE@analytical.example", capture_type="webinar_registration")
    again = client.post(LEADS, json=again_in, headers=headers).json()
    assert again["contact_id"] == first["contact_id"]
    assert again["lead_id"] == first["lead_id"]
    assert again["steps"]["deduplication"]["outcome"] == "updated"


def test_pii_is_not_readable_in_the_database(
    client: TestClient, auth_headers: Headers, session: Session
) -> None:
    client.post(LEADS, json=lead(), headers=auth_headers("sales"))
    rows = session.execute(text("SELECT * FROM contact")).all()
    dump = repr(rows) + repr(session.execute(text("SELECT * FROM identity")).all())
    assert rows
    assert "lovelace" not in dump.lower()
    assert "+442079460958" not in dump


def test_events_carry_no_personal_data(
    client: TestClient, auth_headers: Headers, session: Session
) -> None:
    client.post(LEADS, json=lead(), headers=auth_headers("sales"))
    events = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "lead-capture")).all()
    types = {e.event_type for e in events}
    assert {"lead.processed", "lead.assigned", "lead.follow_up_requested"} <= types
    assert all("lovelace" not in repr(e.payload).lower() for e in events)
