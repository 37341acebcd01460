"""Sync over the HTTP API, as an administrator runs it: ask for a sync, follow its runs,
export a run's rows as CSV, read the failed-row index, settle conflicts, reconcile."""

from __future__ import annotations

import csv
import io
import uuid

from fastapi.testclient import TestClient

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.events.bus import Bus
from revhub.core.settings import Settings
from revhub.crm import service
from revhub.crm.jobs import sync_chore
from revhub.crm.mappings import default_mappings
from revhub.crm.push import push_contacts
from revhub.sales.jobs import alerts_consumer
from tests.crm.conftest import HUBSPOT_TOKEN
from tests.crm.factories import OPPS, capture, hubspot_target, no_wait, plant_amount_conflict
from tests.crm.fakes.hubspot import HubSpotState
from tests.eventing import deliver_all
from tests.sales.factories import SALES, Headers

CRM = "/api/v1/crm"


def connect(client: TestClient, admin: dict[str, str], url: str) -> None:
    body = {
        "name": "hs",
        "crm": "hubspot",
        "base_url": url,
        "credentials": {"access_token": HUBSPOT_TOKEN},
    }
    assert client.post(f"{CRM}/connections", json=body, headers=admin).status_code == 201


def run_worker(db: Database, settings: Settings) -> None:
    chore = sync_chore(db, pii_for(settings), service.credentials_box(settings), default_mappings())
    chore.sleep, chore.threads = no_wait, 1
    chore.tick()
    chore.drain()


def test_a_sync_asked_over_the_api_runs_in_the_worker_and_its_rows_export_as_csv(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    admin = auth_headers("admin")
    connect(client, admin, url)
    leads = capture(client, auth_headers, 2)
    asked = client.post(f"{CRM}/connections/hs/sync", params={"full": "true"}, headers=admin)
    assert asked.status_code == 202 and asked.json()["full"] is True
    assert client.get(f"{CRM}/runs", headers=admin).json() == []
    run_worker(db, settings)
    runs = client.get(f"{CRM}/runs", params={"connection": "hs"}, headers=admin).json()
    assert sorted((r["direction"], r["kind"]) for r in runs) == [
        ("pull", "contact"),
        ("pull", "deal"),
        ("push", "contact"),
        ("push", "deal"),
    ]
    (push,) = [r for r in runs if (r["direction"], r["kind"]) == ("push", "contact")]
    assert push["status"] == "succeeded" and push["counts"] == {"created": 2}
    assert push["trigger"] == "api" and push["full"] is True
    one = client.get(f"{CRM}/runs/{push['id']}", headers=admin)
    assert one.json()["counts"] == {"created": 2}
    export = client.get(f"{CRM}/runs/{push['id']}/rows", headers=admin)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["outcome"] for r in rows] == ["created", "created"]
    crm_ids = {state.find("contacts", "email", p["email"])["id"] for p in leads}  # type: ignore[index]
    assert {r["crm_id"] for r in rows} == crm_ids


def test_unknown_or_malformed_names_and_ids_are_problems(
    client: TestClient, auth_headers: Headers
) -> None:
    admin = auth_headers("admin")
    assert client.post(f"{CRM}/connections/nope/sync", headers=admin).status_code == 404
    assert (
        client.get(f"{CRM}/runs", params={"connection": "nope"}, headers=admin).status_code == 404
    )
    missing = client.get(f"{CRM}/runs/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get(f"{CRM}/runs/{uuid.uuid4()}/rows", headers=admin).status_code == 404
    bad = client.get(f"{CRM}/runs/not-a-run", headers=admin)
    assert bad.status_code == 422 and "path.run_id" in [e["field"] for e in bad.json()["errors"]]
    too_many = client.get(f"{CRM}/runs", params={"limit": 100000}, headers=admin)
    assert too_many.status_code == 422
    status = client.get(f"{CRM}/conflicts", params={"status": "maybe"}, headers=admin)
    assert status.status_code == 422
    assert "query.status" in [e["field"] for e in status.json()["errors"]]
    assert client.get(f"{CRM}/connections/nope/failed-rows", headers=admin).status_code == 404
    assert client.post(f"{CRM}/connections/nope/reconciliation", headers=admin).status_code == 404
    sales = auth_headers("sales")
    assert client.get(f"{CRM}/runs", headers=sales).status_code == 403
    assert client.get(f"{CRM}/conflicts", headers=sales).status_code == 403


def test_a_crm_down_for_the_run_fills_the_failed_row_index_shown_with_the_vendor_error(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    admin = auth_headers("admin")
    connect(client, admin, url)
    capture(client, auth_headers, 2)
    state.down = True
    client.post(f"{CRM}/connections/hs/sync", headers=admin)
    run_worker(db, settings)
    failed = client.get(f"{CRM}/connections/hs/failed-rows", headers=admin).json()
    assert len(failed) == 2 and all("unavailable" in f["error"] for f in failed)
    runs = client.get(f"{CRM}/runs", params={"connection": "hs"}, headers=admin).json()
    outcomes = {(r["direction"], r["kind"]): (r["status"], r["counts"]) for r in runs}
    assert outcomes.pop(("push", "deal")) == ("succeeded", {}), "no deal is linked yet"
    assert {status for status, _ in outcomes.values()} == {"failed"}
    state.down = False
    client.post(f"{CRM}/connections/hs/sync", headers=admin)
    run_worker(db, settings)
    assert client.get(f"{CRM}/connections/hs/failed-rows", headers=admin).json() == []
    assert len(state.written) == 2


def test_a_conflict_alerts_sales_and_is_listed_and_settled_by_an_administrator(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    bus: Bus,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    _, opp_id = plant_amount_conflict(client, auth_headers, db, settings, state, url)
    admin = auth_headers("admin")
    (conflict,) = client.get(f"{CRM}/conflicts", headers=admin).json()
    assert deliver_all(bus, alerts_consumer()) >= 1
    notes = client.get(f"{SALES}/notifications", headers=auth_headers("sales")).json()["items"]
    (alert,) = [n for n in notes if n["kind"] == "crm_conflict"]
    assert f"/crm/conflicts/{conflict['id']}/resolve" in alert["message"]
    assert "'1500'" in alert["message"] and "'2000'" in alert["message"]
    assert (conflict["field"], conflict["hub_value"], conflict["crm_value"]) == (
        "amount",
        "1500",
        "2000",
    )
    resolve = f"{CRM}/conflicts/{conflict['id']}/resolve"
    for body in ({"side": "both"}, {}):
        bad = client.post(resolve, json=body, headers=admin)
        assert bad.status_code == 422 and "body.side" in [e["field"] for e in bad.json()["errors"]]
    unknown = client.post(
        f"{CRM}/conflicts/{uuid.uuid4()}/resolve", json={"side": "crm"}, headers=admin
    )
    assert unknown.status_code == 404
    assert (
        client.post(resolve, json={"side": "crm"}, headers=auth_headers("sales")).status_code == 403
    )
    settled = client.post(resolve, json={"side": "crm"}, headers=admin)
    assert settled.status_code == 200, settled.text
    assert (settled.json()["status"], settled.json()["resolution"]) == ("resolved", "crm")
    assert settled.json()["resolved_by"]
    deal = client.get(f"{OPPS}/{opp_id}", headers=auth_headers("sales")).json()
    assert deal["amount"] == "2000.00"
    assert client.post(resolve, json={"side": "hub"}, headers=admin).status_code == 409
    assert client.get(f"{CRM}/conflicts", headers=admin).json() == []
    resolved = client.get(f"{CRM}/conflicts", params={"status": "resolved"}, headers=admin).json()
    assert [c["id"] for c in resolved] == [conflict["id"]]


def test_reconciliation_over_the_api_reports_accuracy_and_the_discrepancy(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    hubspot: tuple[HubSpotState, str],
) -> None:
    state, url = hubspot
    leads = capture(client, auth_headers, 2)
    target = hubspot_target(db, settings, url)
    push_contacts(db, pii_for(settings), target, trigger="manual")
    stored = state.find("contacts", "email", leads[1]["email"])
    assert stored is not None
    state.objects["contacts"][stored["id"]]["properties"]["lastname"] = "Planted"
    admin = auth_headers("admin")
    answer = client.post(f"{CRM}/connections/{target.name}/reconciliation", headers=admin)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["compared"], report["matching"], report["accuracy_percent"]) == (2, 1, 50.0)
    assert report["meets_target"] is False
    (found,) = report["discrepancies"]
    assert found["crm_id"] == stored["id"] and "last_name" in found["problem"]
    state.down = True
    down = client.post(f"{CRM}/connections/{target.name}/reconciliation", headers=admin)
    assert down.status_code == 502 and down.headers["content-type"] == "application/problem+json"
    latest = client.get(f"{CRM}/runs", params={"connection": target.name}, headers=admin).json()[0]
    assert (latest["direction"], latest["status"]) == ("reconcile", "failed")
