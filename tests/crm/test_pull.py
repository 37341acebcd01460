"""Pull: deals closed in the CRM come back as won opportunities and customers; a shared field
edited on both sides goes to the later write with the loser kept; a critical one waits in the
conflict queue; our own writes read back change nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.events.models import OutboxEvent
from revhub.core.settings import Settings
from revhub.crm.models import Conflict, FieldDecision, SyncRun
from revhub.crm.personal import open_value
from revhub.crm.pull import pull
from revhub.crm.push import push_contacts, push_deals
from revhub.sales.models import Lead
from tests.crm.factories import (
    LEADS,
    OPPS,
    capture,
    hubspot_target,
    later,
    plant_amount_conflict,
    webinar_attendee,
    won_deal_of,
)
from tests.crm.fakes.hubspot import HubSpotState
from tests.sales.factories import CONTACTS, SALES, Headers, contact_by_email, created


def test_a_deal_won_in_hubspot_comes_back_and_makes_its_contact_a_customer(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    (person,) = capture(client, auth_headers, 1)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    state.put(
        "deals",
        {
            "dealname": "Enterprise plan",
            "amount": "48000.50",
            "dealstage": "closedwon",
            "closedate": "2026-11-30T12:00:00Z",
            "marketing_platform_lead_id": person["lead_id"],
        },
        at=later(),
    )
    run = pull(db, pii, target, "deal", trigger="manual")
    assert run.counts == {"created": 1}, run.detail
    deal = won_deal_of(client, auth_headers, person["email"])
    assert deal["amount"] == "48000.50"
    events = session.scalars(select(OutboxEvent.event_type)).all()
    assert "opportunity.created" in events, "attribution recomputes on opportunity events"
    assert events.count("contact.stage_changed") == 2, "opportunity, then customer"
    again = pull(db, pii, target, "deal", trigger="manual")
    assert again.counts in ({}, {"unchanged": 1})


def test_a_shared_field_edited_on_both_sides_goes_to_the_later_write_and_keeps_the_loser(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    (person,) = capture(client, auth_headers, 1)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    stored = state.find("contacts", "email", person["email"])
    assert stored is not None
    sales = auth_headers("sales")
    again = {"email": person["email"], "first_name": "Amazing", "last_name": "Hopper"}
    created(client.post(LEADS, json=again | {"company": "Navy"}, headers=sales))
    state.edit("contacts", stored["id"], {"firstname": "Admiral", "company": "US Navy"}, at=later())
    run = pull(db, pii, target, "contact", trigger="manual")
    assert run.counts == {"updated": 1}, run.detail
    found = contact_by_email(client, sales, person["email"])
    profile = created(client.get(f"{CONTACTS}/{found['id']}", headers=sales), 200)
    assert profile["first_name"] == "Admiral" and profile["company"] == "US Navy"
    decisions = session.scalars(
        select(FieldDecision).where(FieldDecision.connection_id == target.connection_id)
    ).all()
    lost = {d.field: (d.winner, open_value(pii, d.lost_value)) for d in decisions}
    assert lost["first_name"] == ("crm", "Amazing")
    stored_lost = {d.field: d.lost_value for d in decisions}
    assert "Amazing" not in json.dumps(stored_lost["first_name"]), "a name is sealed at rest"
    assert stored_lost["company"] == "Navy", "a company is not personal data"


def test_the_hub_wins_a_shared_field_it_changed_last_and_pushes_it_again(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    (person,) = capture(client, auth_headers, 1)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    stored = state.find("contacts", "email", person["email"])
    assert stored is not None
    state.edit("contacts", stored["id"], {"firstname": "Old"}, at=datetime.now(UTC))
    sales = auth_headers("sales")
    body = {"email": person["email"], "first_name": "Newest", "last_name": "Hopper"}
    created(client.post(LEADS, json=body | {"company": "Navy"}, headers=sales))
    run = pull(db, pii, target, "contact", trigger="manual", full=True)
    assert run.counts == {"unchanged": 1}
    (decision,) = session.scalars(
        select(FieldDecision).where(FieldDecision.connection_id == target.connection_id)
    ).all()
    lost = open_value(pii, decision.lost_value)
    assert (decision.field, decision.winner, lost) == ("first_name", "hub", "Old")
    push_contacts(db, pii, target, trigger="manual")
    assert state.find("contacts", "email", person["email"])["properties"]["firstname"] == "Newest"  # type: ignore[index]


def test_a_critical_field_changed_on_both_sides_waits_in_the_conflict_queue(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    target, opp_id = plant_amount_conflict(client, auth_headers, db, settings, state, url)
    (run,) = session.scalars(
        select(SyncRun)
        .where(SyncRun.connection_id == target.connection_id, SyncRun.kind == "deal")
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).all()
    assert run.counts == {"unchanged": 1}
    (conflict,) = session.scalars(
        select(Conflict).where(Conflict.connection_id == target.connection_id)
    ).all()
    assert (conflict.field, conflict.hub_value, conflict.crm_value) == ("amount", "1500", "2000")
    assert conflict.status == "open"
    still = created(client.get(f"{OPPS}/{opp_id}", headers=auth_headers("sales")), 200)
    assert still["amount"] == "1500.00"
    alerts = session.scalars(
        select(OutboxEvent).where(OutboxEvent.event_type == "crm.conflict_detected")
    ).all()
    assert len(alerts) == 1 and alerts[0].payload["field"] == "amount"


def test_a_deal_won_in_hubspot_shows_in_the_campaign_attribution(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    sales = auth_headers("sales")
    person = webinar_attendee(client, auth_headers, "autumn-webinar")
    period = {
        "from": (datetime.now(UTC) - timedelta(days=30)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "model": "linear",
    }

    def revenue() -> dict[str, Decimal]:
        report = created(client.get(f"{SALES}/attribution", params=period, headers=sales), 200)
        return {i["campaign_key"]: Decimal(i["attributed_revenue"]) for i in report["items"]}

    assert sum(revenue().values()) == 0
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    state.put(
        "deals",
        {
            "dealname": "Autumn deal",
            "amount": "1200",
            "dealstage": "closedwon",
            "closedate": datetime.now(UTC).isoformat(),
            "marketing_platform_lead_id": person["lead_id"],
        },
        at=later(),
    )
    assert pull(db, pii, target, "deal", trigger="manual").counts == {"created": 1}
    after = revenue()
    assert after["autumn-webinar"] > 0, "the webinar touch shares the won deal's credit"
    assert sum(after.values()) == Decimal("1200.00")


def test_a_contact_given_an_owner_in_hubspot_moves_to_that_rep(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    sales = auth_headers("sales")
    rep = {"name": "Rita Rep", "email": "rita@revhub.example"}
    rita = created(client.post(f"{SALES}/reps", json=rep, headers=sales))
    (person,) = capture(client, auth_headers, 1)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    stored = state.find("contacts", "email", person["email"])
    assert stored is not None
    state.owners = {"501": "rita@revhub.example"}
    state.edit("contacts", stored["id"], {"hubspot_owner_id": "501"}, at=later())
    assert pull(db, pii, target, "contact", trigger="manual").counts == {"updated": 1}
    owner = session.scalar(select(Lead.owner_rep_id).where(Lead.id == uuid.UUID(person["lead_id"])))
    assert str(owner) == rita["id"]


def test_a_push_sends_only_what_changed_so_a_crm_edit_made_before_it_still_comes_back(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    sales = auth_headers("sales")
    rita = created(
        client.post(
            f"{SALES}/reps", json={"name": "Rita", "email": "rita@x.example"}, headers=sales
        )
    )
    person = webinar_attendee(client, auth_headers, "winter-webinar")
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    stored = state.find("contacts", "email", person["email"])
    assert stored is not None
    score = stored["properties"]["marketing_platform_lead_score"]
    state.owners = {"501": "rita@x.example"}
    state.edit(
        "contacts", stored["id"], {"firstname": "Admiral", "hubspot_owner_id": "501"}, at=later()
    )
    touch = {
        "email": person["email"],
        "campaign": "winter-webinar",
        "channel": "webinar",
        "kind": "content_download",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    created(client.post(f"{SALES}/touchpoints", json=touch, headers=sales))
    assert push_contacts(db, pii, target, trigger="manual").counts == {"updated": 1}
    props = state.find("contacts", "email", person["email"])["properties"]  # type: ignore[index]
    assert props["marketing_platform_lead_score"] != score, "the new score went out"
    assert props["firstname"] == "Admiral", "the unchanged first name was not sent over it"
    assert pull(db, pii, target, "contact", trigger="manual").counts == {"updated": 1}
    found = contact_by_email(client, sales, person["email"])
    assert (
        created(client.get(f"{CONTACTS}/{found['id']}", headers=sales), 200)["first_name"]
        == "Admiral"
    )
    owner = session.scalar(select(Lead.owner_rep_id).where(Lead.id == uuid.UUID(person["lead_id"])))
    assert str(owner) == rita["id"]


def test_a_record_that_breaks_a_database_rule_fails_alone_and_is_read_again(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    (person,) = capture(client, auth_headers, 1)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    deal = {"dealname": "Pilot", "amount": "900", "marketing_platform_lead_id": person["lead_id"]}
    state.put("deals", deal, at=later(1))
    assert pull(db, pii, target, "deal", trigger="manual").counts == {"created": 1}
    assert push_deals(db, target, trigger="manual").counts == {"updated": 1}
    (original,) = state.objects["deals"].values()
    clone = dict(original["properties"]) | {"dealname": "Pilot (copy)"}
    state.put("deals", clone, at=later(2))
    run = pull(db, pii, target, "deal", trigger="manual")
    assert (run.status, run.counts) == ("failed", {"failed": 1}), "finished, not left running"
    assert "read again" in run.detail
    again = pull(db, pii, target, "deal", trigger="manual")
    assert again.counts.get("failed") == 1, "the cursor waited at the failed record"
