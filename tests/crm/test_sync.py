"""The worker's side of sync: the ``crm-sync`` consumer queues captured leads and the chore
pushes them (real-time path), a CRM that is down holds up only itself, the 02:00 job asks for
a sync of every connection, and reconciliation finds what differs."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.attribution.jobs import analytics_consumer
from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.errors import Conflict
from revhub.core.events.bus import Bus
from revhub.core.events.models import AppliedEvent
from revhub.core.jobs import service as jobs
from revhub.core.settings import Settings
from revhub.crm import service, sync
from revhub.crm.jobs import JOB, crm_sync_consumer, sync_chore
from revhub.crm.mappings import default_mappings
from revhub.crm.models import CrmConnection, CrmLink, FailedRow, PendingPush, SyncRequest, SyncRun
from revhub.crm.push import push_contacts
from revhub.crm.reconcile import reconcile
from revhub.crm.sync import Lease, SyncWorker, request_sync, sync_connection
from revhub.worker import consumer_registry, job_registry
from tests.crm.conftest import HUBSPOT_TOKEN
from tests.crm.factories import capture, hubspot_target, later, no_wait, webinar_attendee
from tests.crm.fakes.hubspot import HubSpotState, build_app
from tests.crm.fakes.server import serve
from tests.crm.test_hubspot import SEED_CONTACT_PROPERTIES, SEED_DEAL_PROPERTIES
from tests.eventing import deliver_all
from tests.sales.factories import SALES, Headers, contact_by_email, created


def worker(db: Database, settings: Settings) -> SyncWorker:
    chore = sync_chore(db, pii_for(settings), service.credentials_box(settings), default_mappings())
    chore.sleep = no_wait
    chore.threads = 1  # the test's database is one connection: one sync at a time
    return chore


def run_chore(chore: SyncWorker) -> None:
    chore.tick()
    chore.drain()


def test_a_captured_lead_reaches_hubspot_through_the_consumer_and_the_chore(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    bus: Bus,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    target = hubspot_target(db, settings, url)
    (person,) = capture(client, auth_headers, 1)
    assert deliver_all(bus, crm_sync_consumer()) >= 1
    assert len(session.scalars(select(PendingPush)).all()) == 1
    run_chore(worker(db, settings))
    stored = state.find("contacts", "email", person["email"])
    assert stored is not None and stored["properties"]["marketing_platform_id"] == person["lead_id"]
    session.expire_all()
    assert session.scalars(select(PendingPush)).all() == []
    (run,) = session.scalars(
        select(SyncRun).where(SyncRun.connection_id == target.connection_id)
    ).all()
    assert (run.trigger, run.counts) == ("realtime", {"created": 1})


def test_without_an_active_connection_lead_events_are_passed_over_unrecorded(
    client: TestClient, auth_headers: Headers, session: Session, bus: Bus
) -> None:
    capture(client, auth_headers, 2)
    assert deliver_all(bus, crm_sync_consumer()) >= 2
    recorded = select(AppliedEvent).where(AppliedEvent.consumer == crm_sync_consumer().name)
    assert session.scalars(recorded).all() == []


def test_a_crm_that_is_down_holds_up_only_its_own_connection(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    bus: Bus,
    hubspot: tuple[HubSpotState, str],
) -> None:
    down_state, down_url = hubspot
    down_state.down = True
    up_state = HubSpotState(
        custom_properties={"contacts": SEED_CONTACT_PROPERTIES, "deals": SEED_DEAL_PROPERTIES},
        private_app_token=HUBSPOT_TOKEN,
    )
    with serve(build_app(up_state)) as up_url:
        down = hubspot_target(db, settings, down_url)
        hubspot_target(db, settings, up_url)
        leads = capture(client, auth_headers, 3)
        deliver_all(bus, crm_sync_consumer())
        chore = worker(db, settings)
        run_chore(chore)
        assert all(up_state.find("contacts", "email", p["email"]) for p in leads)
        failed = session.scalars(
            select(FailedRow).where(FailedRow.connection_id == down.connection_id)
        ).all()
        assert len(failed) == 3
        down_state.down = False
        run_chore(chore)
        assert not down_state.written, "a failed connection rests before the next push"
    with db.transaction() as writing:
        request_sync(writing, connection_id=down.connection_id, full=False, trigger="test")
    run_chore(worker(db, settings))
    assert all(down_state.find("contacts", "email", p["email"]) for p in leads)
    session.expire_all()
    assert (
        session.scalars(
            select(FailedRow).where(FailedRow.connection_id == down.connection_id)
        ).all()
        == []
    )


def test_the_0200_job_asks_for_a_sync_of_every_connection_and_the_worker_runs_it(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    target = hubspot_target(db, settings, url)
    capture(client, auth_headers, 2)
    registry = job_registry(settings, consumer_registry(settings))
    assert registry.jobs[JOB].schedule == "0 2 * * *"
    jobs.run_by_hand(db, registry=registry, name=JOB, actor="test", worker="w")
    assert session.get(SyncRequest, target.connection_id) is not None
    run_chore(worker(db, settings))
    session.expire_all()
    assert session.get(SyncRequest, target.connection_id) is None
    steps = session.scalars(
        select(SyncRun)
        .where(SyncRun.connection_id == target.connection_id)
        .order_by(SyncRun.started_at)
    ).all()
    assert [(r.direction, r.kind, r.trigger) for r in steps] == [
        ("push", "contact", "schedule"),
        ("pull", "contact", "schedule"),
        ("pull", "deal", "schedule"),
        ("push", "deal", "schedule"),
    ]
    assert steps[0].counts == {"created": 2} and len(state.written) == 2


def test_reconciliation_finds_a_planted_discrepancy_and_the_next_push_repairs_it(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    leads = capture(client, auth_headers, 4)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    clean = reconcile(db, pii, target, trigger="manual")
    assert (clean.compared, clean.matching, clean.accuracy_percent) == (4, 4, 100.0)
    planted = state.find("contacts", "email", leads[0]["email"])
    assert planted is not None
    quietly = datetime.now(UTC) - timedelta(days=30)
    state.edit("contacts", planted["id"], {"marketing_platform_lead_score": "1"}, at=quietly)
    report = reconcile(db, pii, target, trigger="manual")
    assert (report.compared, report.matching) == (4, 3)
    assert report.accuracy_percent == 75.0 and not report.meets_target
    (found,) = report.discrepancies
    assert found.crm_id == planted["id"] and "lead_score" in found.problem
    repaired = push_contacts(db, pii, target, trigger="manual")
    assert repaired.counts == {"updated": 1}
    assert reconcile(db, pii, target, trigger="manual").accuracy_percent == 100.0


def test_a_pulled_deal_gets_the_hub_id_and_its_attribution_primary_campaign_written_back(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    bus: Bus,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    person = webinar_attendee(client, auth_headers, "spring-webinar")
    target = hubspot_target(db, settings, url)
    deal = state.put(
        "deals",
        {"dealname": "Pilot", "amount": "900", "marketing_platform_lead_id": person["lead_id"]},
        at=later(),
    )
    runs = sync_connection(
        db,
        pii_for(settings),
        service.credentials_box(settings),
        default_mappings(),
        name=target.name,
        full=True,
        sleep=no_wait,
    )
    assert [(r.direction, r.kind, r.counts) for r in runs][2:] == [
        ("pull", "deal", {"created": 1}),
        ("push", "deal", {"updated": 1}),
    ]
    (opportunity_id,) = session.scalars(select(CrmLink.hub_id).where(CrmLink.crm_id == deal["id"]))
    written = state.find("deals", "hs_object_id", deal["id"])
    assert written is not None
    assert written["properties"]["marketing_platform_id"] == str(opportunity_id)
    assert deliver_all(bus, analytics_consumer()) >= 1, "the deal's credit is computed"
    assert deliver_all(bus, crm_sync_consumer()) >= 1
    queued = session.scalars(select(PendingPush).where(PendingPush.kind == "deal")).all()
    assert [q.hub_id for q in queued] == [opportunity_id]
    run_chore(worker(db, settings))
    props = state.find("deals", "hs_object_id", deal["id"])["properties"]  # type: ignore[index]
    assert props["marketing_platform_campaign_id"] == "spring-webinar"
    again = sync_connection(
        db,
        pii_for(settings),
        service.credentials_box(settings),
        default_mappings(),
        name=target.name,
        sleep=no_wait,
    )
    assert again[3].counts in ({}, {"unchanged": 1}), "nothing new to write"


def test_a_connection_another_process_holds_waits_until_its_lease_ends(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    bus: Bus,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    target = hubspot_target(db, settings, url)
    (person,) = capture(client, auth_headers, 1)
    deliver_all(bus, crm_sync_consumer())
    other = Lease(db, target.connection_id, "worker:other-host:1")
    assert other.take()
    run_chore(worker(db, settings))
    assert state.find("contacts", "email", person["email"]) is None, "held by the other worker"
    with pytest.raises(Conflict, match="worker:other-host:1"):
        sync_connection(
            db,
            pii_for(settings),
            service.credentials_box(settings),
            default_mappings(),
            name=target.name,
        )
    with db.transaction() as writing:
        held = writing.get_one(CrmConnection, target.connection_id)
        held.sync_until = datetime.now(UTC) - timedelta(seconds=1)
    run_chore(worker(db, settings))
    assert state.find("contacts", "email", person["email"]) is not None, "an expired lease"
    session.expire_all()
    released = session.get_one(CrmConnection, target.connection_id)
    assert (released.sync_holder, released.sync_until) == (None, None)


def test_a_held_lease_is_renewed_while_the_holder_works_and_freed_after(
    cli_home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "LEASE_SECONDS", 1.0)
    home = Database.from_url(cli_home.effective_database_url)
    with home.transaction() as session:
        connection_id = service.add_connection(
            session,
            service.credentials_box(cli_home),
            name="hs",
            crm="hubspot",
            credentials={"access_token": "t"},
        ).id

    def until() -> datetime | None:
        with home.reading() as session:
            return session.get_one(CrmConnection, connection_id).sync_until

    with Lease(home, connection_id, "worker:a").held() as taken:
        assert taken
        first = until()
        time.sleep(0.45)
        renewed = until()
        assert not Lease(home, connection_id, "worker:b").take(), "held by a"
    assert first is not None and renewed is not None and renewed > first
    assert until() is None, "released"
    assert Lease(home, connection_id, "worker:b").take()
    home.engine.dispose()


def test_a_real_time_push_does_not_hide_other_changes_from_the_next_incremental_push(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    _, url = hubspot
    first = webinar_attendee(client, auth_headers, "spring-webinar")
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="schedule", full=True)
    touch = {
        "email": first["email"],
        "campaign": "spring-webinar",
        "channel": "webinar",
        "kind": "content_download",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    created(client.post(f"{SALES}/touchpoints", json=touch, headers=auth_headers("sales")))
    (second,) = capture(client, auth_headers, 1)
    ids = [contact_by_email(client, auth_headers("sales"), second["email"])["id"]]
    only = push_contacts(db, pii, target, trigger="realtime", only=[uuid.UUID(i) for i in ids])
    assert only.counts == {"created": 1}
    nightly = push_contacts(db, pii, target, trigger="schedule")
    assert nightly.counts == {"updated": 1, "unchanged": 1}, "the first's new score goes out"
