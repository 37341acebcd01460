"""Liveness, readiness, metrics and the request id, through HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient


def test_healthz_answers_without_credentials(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database_and_redis_when_configured(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    if client.app.state.hub.settings.redis_url:  # type: ignore[attr-defined]
        assert checks["redis"] == "ok"


def test_readyz_reports_an_unreachable_redis_as_503(settings, db) -> None:  # type: ignore[no-untyped-def]
    from revhub.api import create_app

    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken, db=db, check_schema=False)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error")
    assert "redis" in body["detail"]


def test_request_id_is_returned_and_a_safe_incoming_one_kept(client: TestClient) -> None:
    fresh = client.get("/healthz").headers["x-request-id"]
    assert len(fresh) == 32
    kept = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert kept.headers["x-request-id"] == "trace-42"
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_metrics_count_requests_by_route_template_and_status(
    client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    admin = auth_headers("admin")
    client.get("/api/v1/keys/00000000-0000-0000-0000-000000000000", headers=admin)
    client.get("/api/v1/audit", headers=admin)
    response = client.get("/metrics", headers=admin)
    assert response.status_code == 200
    text = response.text
    assert 'revhub_http_requests_total{method="GET",route="/api/v1/audit",status="200"}' in text
    assert "revhub_http_request_duration_seconds_bucket" in text


def test_metrics_need_the_metrics_scope(
    client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth_headers("sales")).status_code == 403
    assert client.get("/metrics", headers=auth_headers("analyst")).status_code == 200


def test_log_lines_are_json_and_carry_the_request_id(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.get("/healthz", headers={"X-Request-ID": "log-check-1"})
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert any(
        line["request_id"] == "log-check-1"
        and line["status"] == 200
        and line["route"] == "/healthz"
        for line in request_lines
    )
