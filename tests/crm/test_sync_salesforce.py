"""Sync with Salesforce end to end, through the real push and pull against the fake org:
captured leads are upserted as Leads by ``Marketing_Platform_ID__c`` once, a won
Opportunity comes back and makes its contact a customer, the daily request limit (403
``REQUEST_LIMIT_EXCEEDED``) and an expired session lose no row and send none twice, and a
Lead edited in Salesforce flows back field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.settings import Settings
from revhub.crm.connectors.salesforce import LIMIT_WAIT_S, Salesforce
from revhub.crm.models import FieldDecision
from revhub.crm.personal import open_value
from revhub.crm.pull import pull
from revhub.crm.push import MAX_PAUSES, push_contacts
from tests.crm.factories import (
    LEADS,
    capture,
    failed_rows,
    later,
    no_wait,
    salesforce_target,
    won_deal_of,
)
from tests.crm.fakes.salesforce import INTEGRATION_USER, SALES_REP, SalesforceState
from tests.crm.test_salesforce import DATA, KEY, TOKEN, UPSERT_LEADS
from tests.sales.factories import CONTACTS, Headers, contact_by_email, created

SEED_LEAD_FIELDS = {KEY, "Email", "FirstName", "LastName", "Company", "Lead_Score__c", "LeadSource"}


def lead_of(state: SalesforceState, lead_id: str) -> dict[str, Any]:
    """The one live Lead holding ``lead_id`` in the External ID field."""
    (found,) = state.matching("Lead", KEY, lead_id)
    return found


def test_captured_leads_are_upserted_into_salesforce_by_external_id_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    leads = capture(client, auth_headers, 3)
    target = salesforce_target(db, settings, url)
    run = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert run.status == "succeeded" and run.counts == {"created": 3}, run.detail
    assert [c for c in state.calls if c[0] != "GET"] == [TOKEN, UPSERT_LEADS]
    for each in leads:
        held = lead_of(state, each["lead_id"])
        assert set(held) >= SEED_LEAD_FIELDS
        assert held["Email"] == each["email"]
        assert (held["FirstName"], held["LastName"]) == ("Grace", "Hopper")
        assert held["Company"].endswith(".example Corp")
        assert held["LeadSource"] == "webinar" and held["Lead_Score__c"] >= 0
        assert held["LastModifiedById"] == INTEGRATION_USER
    assert [w["op"] for w in state.written] == ["create"] * 3
    again = push_contacts(db, pii_for(settings), target, trigger="manual", full=True)
    assert again.counts == {"unchanged": 3}
    assert len(state.written) == 3 and state.calls.count(UPSERT_LEADS) == 1
    echo = pull(db, pii_for(settings), target, "contact", trigger="manual")
    assert echo.counts == {"unchanged": 3}, "our own Leads (owned by the integration user)"


def test_an_opportunity_won_in_salesforce_comes_back_and_makes_its_contact_a_customer(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    (person,) = capture(client, auth_headers, 1)
    target = salesforce_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    state.put(
        "Opportunity",
        {
            "Name": "Enterprise plan",
            "Amount": 48000.5,
            "StageName": "Closed Won",
            "IsWon": True,
            "IsClosed": True,
            "CloseDate": "2026-11-30",
            "Marketing_Lead_ID__c": person["lead_id"],
        },
        at=later(),
    )
    run = pull(db, pii, target, "deal", trigger="manual")
    assert run.counts == {"created": 1}, run.detail
    deal = won_deal_of(client, auth_headers, person["email"])
    assert deal["amount"] == "48000.50"
    assert deal["name"] == "Enterprise plan" and deal["closed_at"].startswith("2026-11-30")
    again = pull(db, pii, target, "deal", trigger="manual")
    assert again.counts in ({}, {"unchanged": 1})


def test_the_request_limit_pauses_the_push_and_an_expired_session_logs_in_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    target = salesforce_target(db, settings, url)
    pii = pii_for(settings)
    (first,) = capture(client, auth_headers, 1)
    push_contacts(db, pii, target, trigger="manual")
    leads = capture(client, auth_headers, 250)
    state.expire_sessions()
    state.limit_exceeded_calls = 2
    run = push_contacts(db, pii, target, trigger="manual", sleep=no_wait)
    assert run.status == "succeeded", run.detail
    assert run.counts == {"created": 250}
    assert run.paused_seconds == 2 * LIMIT_WAIT_S
    assert state.calls.count(TOKEN) == 2, "one login, one re-login after INVALID_SESSION_ID"
    sent = [w["fields"][KEY] for w in state.written]
    assert sorted(sent) == sorted([first["lead_id"], *(p["lead_id"] for p in leads)])
    assert len(state.live("Lead")) == 251
    assert isinstance(target.connector, Salesforce)
    assert target.connector.api_usage == (state.api_used, state.api_limit)


def test_a_request_limit_that_does_not_lift_fails_the_rows_for_the_next_run_to_send_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    leads = capture(client, auth_headers, 3)
    target = salesforce_target(db, settings, url)
    pii = pii_for(settings)
    state.limit_exceeded_calls = MAX_PAUSES + 1
    run = push_contacts(db, pii, target, trigger="manual", sleep=no_wait)
    assert run.status == "failed" and run.counts == {"failed": 3}
    assert "REQUEST_LIMIT_EXCEEDED" in run.detail or "Limit exceeded" in run.detail
    assert "api-usage 5000/5000" in run.detail, "the Sforce-Limit-Info usage is reported"
    assert state.written == []
    assert len(failed_rows(session, target)) == 3
    retried = push_contacts(db, pii, target, trigger="manual", sleep=no_wait)
    assert retried.counts == {"created": 3}
    assert sorted(w["fields"][KEY] for w in state.written) == sorted(p["lead_id"] for p in leads)
    assert failed_rows(session, target) == []


def test_a_pull_waits_out_the_request_limit_and_an_expired_session(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    (person,) = capture(client, auth_headers, 1)
    target = salesforce_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    state.put(
        "Opportunity",
        {
            "Name": "Pilot",
            "Amount": 1000,
            "StageName": "Closed Won",
            "IsWon": True,
            "CloseDate": "2026-12-01",
            "Marketing_Lead_ID__c": person["lead_id"],
        },
        at=later(),
    )
    state.expire_sessions()
    state.limit_exceeded_calls = 1
    run = pull(db, pii, target, "deal", trigger="manual", sleep=no_wait)
    assert run.status == "succeeded" and run.counts == {"created": 1}, run.detail
    assert run.paused_seconds == LIMIT_WAIT_S
    assert state.calls.count(TOKEN) == 2
    queries = [c for c in state.calls if c == ("GET", f"{DATA}/queryAll")]
    assert len(queries) == 3, "refused for the session, refused for the limit, answered"


def test_a_lead_edited_in_salesforce_after_the_push_flows_back_and_the_later_write_wins(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    (person,) = capture(client, auth_headers, 1)
    target = salesforce_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    held = lead_of(state, person["lead_id"])
    sales = auth_headers("sales")
    again = {"email": person["email"], "first_name": "Amazing", "last_name": "Hopper"}
    created(client.post(LEADS, json=again | {"company": "Navy"}, headers=sales))
    state.edit(
        "Lead", held["Id"], {"FirstName": "Admiral", "Company": "US Navy"}, at=later(), by=SALES_REP
    )
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
    push_contacts(db, pii, target, trigger="manual")
    after = lead_of(state, person["lead_id"])
    assert (after["FirstName"], after["Company"]) == ("Admiral", "US Navy")


def test_the_hub_wins_a_lead_field_it_changed_after_salesforce_and_upserts_it_again(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    (person,) = capture(client, auth_headers, 1)
    target = salesforce_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    held = lead_of(state, person["lead_id"])
    state.edit("Lead", held["Id"], {"FirstName": "Old"}, at=datetime.now(UTC), by=SALES_REP)
    sales = auth_headers("sales")
    body = {"email": person["email"], "first_name": "Newest", "last_name": "Hopper"}
    created(client.post(LEADS, json=body | {"company": "Navy"}, headers=sales))
    run = pull(db, pii, target, "contact", trigger="manual", full=True)
    assert run.counts == {"unchanged": 1}, run.detail
    (decision,) = session.scalars(
        select(FieldDecision).where(FieldDecision.connection_id == target.connection_id)
    ).all()
    lost = open_value(pii, decision.lost_value)
    assert (decision.field, decision.winner, lost) == ("first_name", "hub", "Old")
    push_contacts(db, pii, target, trigger="manual")
    assert lead_of(state, person["lead_id"])["FirstName"] == "Newest"
