"""Lead capture through the HTTP API, as a form tool or a user would send it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.core.db import Base
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
    """Not in the sealed columns, nor anywhere else: the notes of the capture's validation
    step (stored with it and sent in its events) say a name was recased or a phone number
    normalised without quoting either."""
    sent = lead(first_name="ADELHEID", last_name=" lovelace ", phone="+44 20 7946 0958")
    answer = client.post(LEADS, json=sent, headers=auth_headers("sales"))
    assert answer.status_code == 201, answer.text
    assert {"first_name: recased", "phone: normalised"} <= set(
        answer.json()["steps"]["validation"]["transformations"]
    )
    dump = "".join(
        repr(session.execute(table.select()).all()) for table in Base.metadata.sorted_tables
    ).lower()
    assert "analytical" in dump  # the company and its domain are not personal data
    for personal in ("adelheid", "lovelace", "7946", "ada.lovelace@"):
        assert personal not in dump


def test_events_carry_no_personal_data(
    client: TestClient, auth_headers: Headers, session: Session
) -> None:
    client.post(LEADS, json=lead(), headers=auth_headers("sales"))
    events = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "lead-capture")).all()
    types = {e.event_type for e in events}
    assert {"lead.processed", "lead.assigned", "lead.follow_up_requested"} <= types
    payloads = repr([e.payload for e in events]).lower()
    assert "lovelace" not in payloads
    assert "'ada'" not in payloads  # the first name was recased: the note does not quote it
    assert "7946" not in payloads
