"""The analytics-pipeline consumer keeps each deal's write-back credit current and publishes
``attribution.updated`` for the CRM sync; the weekly job recomputes every deal."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.attribution.jobs import MODELLING_JOB, analytics_consumer
from revhub.attribution.models import DealAttribution
from revhub.core.db import Database
from revhub.core.events.bus import Bus
from revhub.core.events.models import OutboxEvent
from revhub.core.jobs import service as jobs
from revhub.core.settings import Settings
from revhub.worker import consumer_registry, job_registry
from tests.eventing import deliver_all
from tests.sales.factories import SALES, Headers, capture, created, lead_at


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


def touch(client: TestClient, sales: dict[str, str], campaign: str, day: str) -> None:
    body = {
        "email": "ada@alpha.example",
        "campaign": campaign,
        "channel": "email",
        "kind": "email_click",
        "occurred_at": f"2026-{day}T10:00:00Z",
    }
    created(client.post(f"{SALES}/touchpoints", json=body, headers=sales))


def campaigns(client: TestClient, sales: dict[str, str], *keys: str) -> None:
    for key in keys:
        body = {"key": key, "name": key.title(), "channel": "email"}
        created(client.post(f"{SALES}/campaigns", json=body, headers=sales))


def open_deal(client: TestClient, sales: dict[str, str], contact_id: str) -> dict[str, Any]:
    """A 900 EUR deal of alpha.example in negotiation since 10 February."""
    deal = {
        "account_domain": "alpha.example",
        "primary_contact_id": contact_id,
        "name": "Alpha",
        "amount": "900.00",
        "currency": "EUR",
        "stage": "Negotiation",
        "opened_at": "2026-02-10T09:00:00Z",
    }
    return created(client.post(f"{SALES}/opportunities", json=deal, headers=sales))


def updates(session: Session) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(OutboxEvent.event_type == "attribution.updated")
    return list(session.scalars(query.order_by(OutboxEvent.seq)))


def test_touches_and_deal_changes_recompute_the_deal_credit_once_each(
    client: TestClient, sales: dict[str, str], bus: Bus, session: Session
) -> None:
    campaigns(client, sales, "spring", "summer")
    ada = capture(client, sales, lead_at("alpha.example", "ada"))
    touch(client, sales, "spring", "02-01")
    opportunity = open_deal(client, sales, ada["contact_id"])
    consumer = analytics_consumer()
    assert deliver_all(bus, consumer) >= 2
    row = session.get(DealAttribution, uuid.UUID(opportunity["id"]))
    assert row is not None
    assert [c["share"] for c in row.credits] == [1.0]
    assert row.credits[0]["revenue"] == "900.00"
    published = updates(session)
    assert len(published) == 1 and published[0].payload["currency"] == "EUR"

    touch(client, sales, "summer", "02-05")  # inside the window: credit now 50/50
    assert deliver_all(bus, consumer) >= 1
    session.expire_all()
    row = session.scalars(select(DealAttribution)).one()
    assert sorted(c["revenue"] for c in row.credits) == ["450.00", "450.00"]
    assert sum(Decimal(c["revenue"]) for c in row.credits) == Decimal("900.00")
    assert len(updates(session)) == 2

    touch(client, sales, "summer", "03-05")  # after the deal opened: nothing changes
    assert deliver_all(bus, consumer) >= 1
    assert len(updates(session)) == 2

    lost = {"stage": "Closed Lost", "is_closed": True, "closed_at": "2026-03-20T09:00:00Z"}
    answer = client.patch(f"{SALES}/opportunities/{opportunity['id']}", json=lost, headers=sales)
    assert answer.status_code == 200, answer.text
    assert deliver_all(bus, consumer) >= 1
    session.expire_all()
    assert session.scalars(select(DealAttribution)).all() == []  # a lost deal has no credit
    assert deliver_all(bus, consumer) == 0


def test_the_weekly_job_recomputes_every_deal(
    client: TestClient, sales: dict[str, str], db: Database, settings: Settings, session: Session
) -> None:
    ada = capture(client, sales, lead_at("alpha.example", "ada"))
    body = {"key": "autumn", "name": "Autumn", "channel": "email"}
    created(client.post(f"{SALES}/campaigns", json=body, headers=sales))
    touch(client, sales, "autumn", "01-20")
    deal = {
        "account_domain": "alpha.example",
        "primary_contact_id": ada["contact_id"],
        "name": "Alpha",
        "amount": "100.00",
        "currency": "USD",
        "stage": "Closed Won",
        "is_closed": True,
        "is_closed_won": True,
        "opened_at": "2026-02-01T09:00:00Z",
        "closed_at": "2026-02-03T09:00:00Z",
    }
    created(client.post(f"{SALES}/opportunities", json=deal, headers=sales))
    registry = job_registry(settings, consumer_registry(settings))
    run = jobs.run_by_hand(db, registry=registry, name=MODELLING_JOB, actor="t", worker="w")
    assert run.status == "succeeded" and run.rows_processed == 1
    session.expire_all()
    row = session.scalars(select(DealAttribution)).one()
    assert row.primary_campaign_id is not None and row.credits[0]["revenue"] == "100.00"


def test_a_batch_of_touches_credits_each_deal_once_under_the_last_touch(
    client: TestClient, sales: dict[str, str], bus: Bus, session: Session
) -> None:
    campaigns(client, sales, "spring", "summer")
    ada = capture(client, sales, lead_at("alpha.example", "ada"))
    capture(client, sales, lead_at("alpha.example", "bob"))
    opportunity = open_deal(client, sales, ada["contact_id"])
    consumer = analytics_consumer()
    deliver_all(bus, consumer)
    assert updates(session) == []  # no touch yet: nothing to credit
    for request_id, email, campaign in (
        ("touch-ada", "ada@alpha.example", "spring"),
        ("touch-bob", "bob@alpha.example", "summer"),  # a colleague: the account's deal
    ):
        body = {
            "email": email,
            "campaign": campaign,
            "channel": "email",
            "kind": "email_click",
            "occurred_at": "2026-02-01T10:00:00Z",
        }
        headers = sales | {"X-Request-ID": request_id}
        created(client.post(f"{SALES}/touchpoints", json=body, headers=headers))
    assert deliver_all(bus, consumer) >= 2
    published = updates(session)
    assert len(published) == 1
    assert published[0].payload["opportunity_id"] == opportunity["id"]
    assert published[0].meta["correlation_id"] == "touch-bob"
    assert sorted(c["revenue"] for c in published[0].payload["credits"]) == ["450.00", "450.00"]
