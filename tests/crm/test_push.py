"""Push: leads captured through the API reach the CRM by the seed mapping, once; rate limits
pause the run, a CRM that is down leaves every row in the failed-row index for the next run."""

from __future__ import annotations

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.settings import Settings
from revhub.crm.mappings import default_text, parse_mappings
from revhub.crm.models import FailedRow, SyncRow
from revhub.crm.push import push_contacts
from tests.crm.factories import OAUTH, capture, hubspot_target, no_wait
from tests.crm.fakes.hubspot import HubSpotState
from tests.sales.factories import CONTACTS, Headers, contact_by_email, created


def test_captured_leads_reach_hubspot_with_the_seed_mapping_and_only_once(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    leads = capture(client, auth_headers, 3)
    target = hubspot_target(db, settings, url)
    run = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert run.status == "succeeded" and run.counts == {"created": 3}
    for each in leads:
        stored = state.find("contacts", "email", each["email"])
        assert stored is not None
        props = stored["properties"]
        assert props["firstname"] == "Grace" and props["lastname"] == "Hopper"
        assert props["marketing_platform_id"] == each["lead_id"]
        assert int(props["marketing_platform_lead_score"]) >= 0
        assert props["hs_analytics_source"] == "webinar"
    again = push_contacts(db, pii_for(settings), target, trigger="manual", full=True)
    assert again.counts == {"unchanged": 3}
    assert len(state.written) == 3


def test_a_burst_of_429s_and_an_expired_token_lose_no_row_and_send_none_twice(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    leads = capture(client, auth_headers, 250)
    state.private_app_token = None
    target = hubspot_target(db, settings, url, OAUTH)
    state.rate_limited_calls = 4
    state.expire_access_token()
    run = push_contacts(db, pii_for(settings), target, trigger="manual", sleep=no_wait)
    assert run.status == "succeeded", run.detail
    assert run.counts == {"created": 250}
    assert run.paused_seconds > 0
    emails = [w["properties"]["email"] for w in state.written]
    assert sorted(emails) == sorted(e["email"] for e in leads)
    assert state.calls.count(("POST", "/oauth/v1/token")) == 1


def test_a_crm_down_for_the_whole_run_leaves_every_row_failed_and_the_next_run_retries(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    capture(client, auth_headers, 5)
    target = hubspot_target(db, settings, url)
    state.down = True
    run = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert run.status == "failed" and run.counts == {"failed": 5}
    assert "unavailable" in run.detail
    failed = session.scalars(
        select(FailedRow).where(FailedRow.connection_id == target.connection_id)
    ).all()
    assert len(failed) == 5
    state.down = False
    retried = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert retried.counts == {"created": 5}
    assert (
        session.scalars(
            select(FailedRow).where(FailedRow.connection_id == target.connection_id)
        ).all()
        == []
    )
    outcomes = session.scalars(select(SyncRow.outcome).where(SyncRow.run_id == retried.id)).all()
    assert sorted(outcomes) == ["created"] * 5


def test_a_row_the_crm_refuses_fails_alone_and_stays_in_the_index(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    capture(client, auth_headers, 2)
    state.custom_properties["contacts"] = state.custom_properties["contacts"] - {
        "marketing_platform_lead_score"
    }
    target = hubspot_target(db, settings, url)
    run = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert run.status in {"failed", "partial"}
    rows = session.scalars(select(SyncRow).where(SyncRow.run_id == run.id)).all()
    assert {r.outcome for r in rows} == {"failed"}
    assert all(r.error and "marketing_platform_lead_score" in r.error for r in rows)
    index = session.scalars(
        select(FailedRow).where(FailedRow.connection_id == target.connection_id)
    ).all()
    assert len(index) == 2 and all(r.attempts == 1 for r in index)


def test_in_mirror_mode_a_contact_merged_into_another_is_deleted_from_the_crm(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    first, second = capture(client, auth_headers, 2)
    document = yaml.safe_load(default_text())
    document["hubspot"]["contact"]["mode"] = "mirror"
    target = hubspot_target(db, settings, url)
    target.mapping = parse_mappings(document, source="test").hubspot
    pii = pii_for(settings)
    assert push_contacts(db, pii, target, trigger="manual").counts == {"created": 2}
    absorbed = state.find("contacts", "email", second["email"])
    assert absorbed is not None
    sales = auth_headers("sales")
    ids = [contact_by_email(client, sales, p["email"])["id"] for p in (first, second)]
    for contact in ids:
        body = {"kind": "crm:salesforce", "value": "00Q-same-person"}
        created(client.post(f"{CONTACTS}/{contact}/identities", json=body, headers=sales), 200)
    run = push_contacts(db, pii, target, trigger="manual")
    assert run.counts.get("deleted") == 1, run.counts
    assert state.objects["contacts"][absorbed["id"]]["archived"]
    assert push_contacts(db, pii, target, trigger="manual").counts.get("deleted") is None


def test_a_crm_failing_in_the_middle_of_a_chunk_keeps_what_it_took_and_fails_only_the_rest(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    leads = capture(client, auth_headers, 250)
    target = hubspot_target(db, settings, url)
    state.batches_before_down = 2
    run = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert (run.status, run.counts) == ("failed", {"created": 200, "failed": 50})
    failed = select(FailedRow).where(FailedRow.connection_id == target.connection_id)
    assert len(session.scalars(failed).all()) == 50
    state.batches_before_down = None
    retried = push_contacts(db, pii_for(settings), target, trigger="manual")
    assert retried.counts == {"created": 50, "unchanged": 200}, "the 200 are not sent again"
    emails = [w["properties"]["email"] for w in state.written]
    assert sorted(emails) == sorted(p["email"] for p in leads), "each sent once"
