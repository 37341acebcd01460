"""The job endpoints, through the HTTP API as an admin would use them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from revhub.core.db import Database
from revhub.core.jobs import service as jobs
from revhub.core.jobs.registry import JobRegistry
from revhub.core.jobs.scheduler import Scheduler
from tests.core.jobs import plugin
from tests.core.jobs.test_schedule import SEED

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("admin")


@pytest.fixture
def app_jobs(app: FastAPI, registry: JobRegistry) -> JobRegistry:
    """The registry the app's routes use: the defaults plus the plugin's jobs, which run
    only when asked here (a tick on the real clock must not fire them as well)."""
    registry.reschedule(plugin.COUNTING, None)
    app.state.hub = dataclasses.replace(app.state.hub, jobs=registry)
    return registry


def test_lists_every_job_with_schedule_status_and_next_run(
    client: TestClient, admin: dict[str, str]
) -> None:
    listed = client.get("/api/v1/jobs", headers=admin)
    assert listed.status_code == 200
    by_name = {j["name"]: j for j in listed.json()}
    assert set(by_name) == {*SEED, "outbox_prune", "lead_score_decay"}
    health = by_name["health_score_update"]
    assert (health["schedule"], health["status"], health["next_run_at"]) == (
        "0 6 * * *",
        "no handler yet",
        None,
    )
    assert health["domain"] == "success" and health["last_run"] is None
    crm = by_name["crm_contact_sync"]
    assert (crm["status"], crm["domain"]) == ("active", "crm")
    assert datetime.fromisoformat(crm["next_run_at"]).strftime("%H:%M") == "02:00"
    prune = by_name["outbox_prune"]
    assert prune["status"] == "active" and prune["schedule"] == "30 3 * * *"
    assert datetime.fromisoformat(prune["next_run_at"]).strftime("%H:%M") == "03:30"


def test_one_job_and_an_unknown_one(client: TestClient, admin: dict[str, str]) -> None:
    one = client.get("/api/v1/jobs/executive_reporting", headers=admin)
    assert one.status_code == 200 and one.json()["schedule"] == "0 5 1-7 * 1"
    missing = client.get("/api/v1/jobs/nope", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "No job named 'nope'" in missing.json()["detail"]
    assert client.get("/api/v1/jobs/nope/runs", headers=admin).status_code == 404


def test_only_admins_see_jobs(client: TestClient, auth_headers: Headers) -> None:
    assert client.get("/api/v1/jobs", headers=auth_headers("analyst")).status_code == 403
    assert client.post("/api/v1/jobs/outbox_prune/runs").status_code == 401


def test_running_a_job_without_a_handler_is_a_409_saying_so(
    client: TestClient, admin: dict[str, str]
) -> None:
    answer = client.post("/api/v1/jobs/health_score_update/runs", headers=admin)
    assert answer.status_code == 409
    assert "no handler yet" in answer.json()["detail"]
    runs = client.get("/api/v1/jobs/health_score_update/runs", headers=admin).json()
    assert runs == {"items": [], "next_cursor": None}


def test_a_run_asked_for_is_queued_then_a_worker_carries_it_out(
    client: TestClient, admin: dict[str, str], db: Database, app_jobs: JobRegistry
) -> None:
    asked = client.post(f"/api/v1/jobs/{plugin.COUNTING}/runs", headers=admin)
    assert asked.status_code == 202
    run = asked.json()
    assert run["status"] == "queued" and run["trigger"].startswith("manual:test-admin-")
    assert run["started_at"] is None and run["stale"] is False
    again = client.post(f"/api/v1/jobs/{plugin.COUNTING}/runs", headers=admin)
    assert again.status_code == 409 and "already queued" in again.json()["detail"]

    now = datetime.now(UTC)
    Scheduler(db=db, registry=app_jobs, worker="worker-1", started_at=now).tick(now)

    done = client.get(f"/api/v1/jobs/{plugin.COUNTING}/runs/{run['id']}", headers=admin).json()
    assert (done["status"], done["rows_processed"], done["worker"]) == ("succeeded", 3, "worker-1")
    job = client.get(f"/api/v1/jobs/{plugin.COUNTING}", headers=admin).json()
    assert job["last_run"]["id"] == run["id"]
    other_job = client.get(f"/api/v1/jobs/outbox_prune/runs/{run['id']}", headers=admin)
    assert other_job.status_code == 404


def test_a_failed_run_shows_its_error(
    client: TestClient, admin: dict[str, str], db: Database, app_jobs: JobRegistry
) -> None:
    run = client.post(f"/api/v1/jobs/{plugin.FAILING}/runs", headers=admin).json()
    now = datetime.now(UTC)
    Scheduler(db=db, registry=app_jobs, worker="w", started_at=now).tick(now)
    done = client.get(f"/api/v1/jobs/{plugin.FAILING}/runs/{run['id']}", headers=admin).json()
    assert done["status"] == "failed"
    assert done["error"] == "RuntimeError: the warehouse is unreachable"


def test_runs_page_newest_first(
    client: TestClient, admin: dict[str, str], db: Database, app_jobs: JobRegistry
) -> None:
    job = app_jobs.jobs[plugin.COUNTING]
    start = datetime(2026, 3, 2, tzinfo=UTC)
    made = [
        jobs.start_run(
            db,
            job=job,
            trigger="schedule",
            worker="w",
            now=start + timedelta(minutes=i),
            scheduled_for=start + timedelta(minutes=i),
        ).id
        for i in range(5)
    ]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/jobs/{plugin.COUNTING}/runs", headers=admin, params=params)
        assert page.status_code == 200
        seen += [r["id"] for r in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    assert seen == [str(i) for i in reversed(made)] and cursor is None
    bad = client.get(f"/api/v1/jobs/{plugin.COUNTING}/runs?cursor=nope", headers=admin)
    assert bad.status_code == 422


def test_asking_for_a_run_is_audited(
    client: TestClient, admin: dict[str, str], app_jobs: JobRegistry
) -> None:
    run = client.post(f"/api/v1/jobs/{plugin.COUNTING}/runs", headers=admin).json()
    trail = client.get("/api/v1/audit", headers=admin).json()["items"]
    entry = next(e for e in trail if e["action"] == "POST /api/v1/jobs/{name}/runs")
    assert entry["resource_id"] == run["id"] and entry["outcome"] == "success"
