"""Sync with Pipedrive end to end, through the real push and pull against the fake: captured
leads become persons (searched by e-mail, then created, the marketing fields in custom
fields) once, a won deal of a pushed person comes back and makes its contact a customer, a
burst of 429s and an expired OAuth token lose no row and send none twice, and a person
edited in Pipedrive flows back field by field."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.settings import Settings
from revhub.crm import service
from revhub.crm.models import CrmConnection, FieldDecision
from revhub.crm.personal import open_value
from revhub.crm.pull import pull
from revhub.crm.push import MAX_PAUSES, push_contacts
from tests.crm.factories import (
    LEADS,
    OAUTH,
    capture,
    failed_rows,
    later,
    no_wait,
    pipedrive_oauth,
    pipedrive_target,
    won_deal_of,
)
from tests.crm.fakes.pipedrive import PipedriveState
from tests.crm.test_pipedrive import SEARCH
from tests.sales.factories import CONTACTS, Headers, contact_by_email, created

PERSONS = "/api/v2/persons"
TOKEN = ("POST", "/oauth/token")


def person_of(state: PipedriveState, email: str) -> dict[str, Any]:
    """The one live person holding ``email``."""
    (found,) = [p for p in state.live("persons") if email in {e["value"] for e in p["emails"]}]
    return found


def posted(state: PipedriveState) -> list[str]:
    """The e-mail of every person created, in order."""
    return [
        w["body"]["emails"][0]["value"]
        for w in state.written
        if (w["object"], w["method"]) == ("persons", "POST")
    ]


def test_captured_leads_become_pipedrive_persons_searched_then_created_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    leads = capture(client, auth_headers, 3)
    target = pipedrive_target(db, settings, url)
    run = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert run.status == "succeeded" and run.counts == {"created": 3}, run.detail
    assert [c for c in state.calls if c[1].startswith(PERSONS)] == [
        ("GET", SEARCH),
        ("POST", PERSONS),
    ] * 3
    for each in leads:
        held = person_of(state, each["email"])
        assert held["emails"] == [{"value": each["email"], "primary": True, "label": "work"}]
        assert (held["first_name"], held["last_name"], held["name"]) == (
            "Grace",
            "Hopper",
            "Grace Hopper",
        )
        custom = held["custom_fields"]
        assert custom["marketing_platform_id"] == each["lead_id"]
        assert custom["marketing_platform_source"] == "webinar"
        assert isinstance(custom["marketing_platform_lead_score"], int | float)
    assert sorted(posted(state)) == sorted(p["email"] for p in leads)
    again = push_contacts(db, pii_for(settings), target, trigger="manual", full=True)
    assert again.counts == {"unchanged": 3}
    assert len(state.written) == 3
    echo = pull(db, pii_for(settings), target, "contact", trigger="manual")
    assert echo.counts == {"unchanged": 3}, "our own writes read back change nothing"


def test_a_deal_won_in_pipedrive_comes_back_and_makes_its_person_a_customer(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    (person,) = capture(client, auth_headers, 1)
    target = pipedrive_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    state.put(
        "deals",
        {
            "title": "Enterprise plan",
            "value": 48000.5,
            "currency": "USD",
            "status": "won",
            "won_time": "2026-11-30T12:00:00Z",
            "close_time": "2026-11-30T12:00:00Z",
            "person_id": person_of(state, person["email"])["id"],
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


def test_a_burst_of_429s_and_an_expired_oauth_token_lose_no_person_and_create_none_twice(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    leads = capture(client, auth_headers, 5)
    state.api_token = None
    target = pipedrive_target(db, settings, url, pipedrive_oauth(url))
    state.expire_access_token()
    state.rate_limited_calls, state.rate_limit_reset = 3, 7
    waits: list[float] = []
    run = push_contacts(db, pii_for(settings), target, trigger="manual", sleep=waits.append)
    assert run.status == "succeeded", run.detail
    assert run.counts == {"created": 5}
    assert waits == [7.0] * 3, "each 429 waits x-ratelimit-reset seconds"
    assert run.paused_seconds == 21
    assert state.calls.count(TOKEN) == 1
    assert sorted(posted(state)) == sorted(p["email"] for p in leads)
    assert len(state.live("persons")) == 5


def test_a_rate_limit_that_does_not_lift_fails_the_rows_for_the_next_run_to_send_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    leads = capture(client, auth_headers, 3)
    target = pipedrive_target(db, settings, url)
    pii = pii_for(settings)
    state.rate_limited_calls = MAX_PAUSES + 1
    run = push_contacts(db, pii, target, trigger="manual", sleep=no_wait)
    assert run.status == "failed" and run.counts == {"failed": 3}
    assert "Request over limit" in run.detail
    assert state.written == []
    assert len(failed_rows(session, target)) == 3
    retried = push_contacts(db, pii, target, trigger="manual", sleep=no_wait)
    assert retried.counts == {"created": 3}
    assert sorted(posted(state)) == sorted(p["email"] for p in leads)
    assert failed_rows(session, target) == []


def test_a_pull_waits_out_a_429_and_refreshes_an_expired_token_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    (person,) = capture(client, auth_headers, 1)
    target = pipedrive_target(db, settings, url, pipedrive_oauth(url))
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    state.put(
        "deals",
        {"title": "Pilot", "value": 1000, "status": "won", "person_id": 1},
        at=later(),
    )
    assert person_of(state, person["email"])["id"] == 1
    state.expire_access_token()
    state.rate_limited_calls = 1
    run = pull(db, pii, target, "deal", trigger="manual", sleep=no_wait)
    assert run.status == "succeeded" and run.counts == {"created": 1}, run.detail
    assert run.paused_seconds == state.rate_limit_reset
    assert state.calls.count(TOKEN) == 1


def test_a_person_edited_in_pipedrive_after_the_push_flows_back_and_the_later_write_wins(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    (person,) = capture(client, auth_headers, 1)
    target = pipedrive_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    held = person_of(state, person["email"])
    sales = auth_headers("sales")
    again = {"email": person["email"], "first_name": "Amazing", "last_name": "Hopper"}
    created(client.post(LEADS, json=again | {"company": "Navy"}, headers=sales))
    state.edit("persons", held["id"], {"first_name": "Admiral", "last_name": "Byrd"}, at=later())
    run = pull(db, pii, target, "contact", trigger="manual")
    assert run.counts == {"updated": 1}, run.detail
    found = contact_by_email(client, sales, person["email"])
    profile = created(client.get(f"{CONTACTS}/{found['id']}", headers=sales), 200)
    assert (profile["first_name"], profile["last_name"]) == ("Admiral", "Byrd")
    decisions = session.scalars(
        select(FieldDecision).where(FieldDecision.connection_id == target.connection_id)
    ).all()
    lost = {d.field: (d.winner, open_value(pii, d.lost_value)) for d in decisions}
    assert lost["first_name"] == ("crm", "Amazing")
    push_contacts(db, pii, target, trigger="manual")
    after = person_of(state, person["email"])
    assert (after["first_name"], after["last_name"]) == ("Admiral", "Byrd")


def test_a_person_edited_in_the_same_second_as_our_write_is_not_taken_for_our_echo(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    (person,) = capture(client, auth_headers, 1)
    target = pipedrive_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    held = person_of(state, person["email"])
    state.edit("persons", held["id"], {"first_name": "Admiral"}, at=held["update_time"])
    run = pull(db, pii, target, "contact", trigger="manual")
    assert run.counts == {"updated": 1}, "update_time is in whole seconds: same as our write"
    found = contact_by_email(client, auth_headers("sales"), person["email"])
    assert found["first_name"] == "Admiral"


def test_the_hub_wins_a_person_field_it_changed_after_pipedrive_and_patches_it_again(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    (person,) = capture(client, auth_headers, 1)
    target = pipedrive_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    held = person_of(state, person["email"])
    state.edit("persons", held["id"], {"first_name": "Old"}, at=held["update_time"])
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
    assert person_of(state, person["email"])["first_name"] == "Newest"
    (patch,) = [w for w in state.written if w["method"] == "PATCH"]
    assert "emails" not in patch["body"], "the key matched already: the addresses are kept"


def test_a_refreshed_oauth_token_is_stored_so_the_next_run_starts_from_it(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    pipedrive: tuple[PipedriveState, str],
) -> None:
    state, url = pipedrive
    state.api_token, state.rotate_refresh_tokens = None, True
    capture(client, auth_headers, 2)
    target = pipedrive_target(db, settings, url, pipedrive_oauth(url))
    state.expire_access_token()
    assert push_contacts(db, pii_for(settings), target, trigger="manual").counts == {"created": 2}
    stored = session.get_one(CrmConnection, target.connection_id)
    session.refresh(stored)
    sealed = json.loads(service.credentials_box(settings).open(stored.credentials_sealed))
    assert (sealed["access_token"], sealed["refresh_token"]) == (
        state.access_token,
        state.refresh_token,
    )
    assert state.refresh_token != OAUTH["refresh_token"], "the fake rotated it"
    state.expire_access_token()
    capture(client, auth_headers, 1)
    again = service.open_target(
        stored,
        service.credentials_box(settings),
        service.mappings_for(settings),
        db,
        pii_for(settings),
    )
    assert push_contacts(db, pii_for(settings), again, trigger="manual").counts == {"created": 1}
    assert state.calls.count(TOKEN) == 2, (
        "each run refreshed once, the second with the rotated token"
    )
