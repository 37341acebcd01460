"""Writes and denied requests land in the audit trail, which admins page through."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

Headers = Callable[[str], dict[str, str]]


def _entries(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:  # type: ignore[type-arg]
    response = client.get("/api/v1/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def test_a_write_is_audited_with_actor_resource_and_request_id(
    client: TestClient, auth_headers: Headers
) -> None:
    admin = auth_headers("admin")
    created = client.post(
        "/api/v1/keys",
        json={"name": "n8n", "role": "marketing"},
        headers={**admin, "X-Request-ID": "req-audit-1"},
    )
    entry = _entries(client, admin)[0]
    assert entry["action"] == "POST /api/v1/keys"
    assert entry["resource_type"] == "keys"
    assert entry["resource_id"] == created.json()["id"]
    assert entry["request_id"] == "req-audit-1"
    assert entry["outcome"] == "success" and entry["status_code"] == 201
    assert entry["role"] == "admin" and entry["actor"].startswith("test-admin")


def test_denied_requests_are_audited(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin")
    client.get("/api/v1/keys", headers={"X-Request-ID": "no-creds"})
    client.get("/api/v1/keys", headers={**auth_headers("sales"), "X-Request-ID": "wrong-role"})
    denied = {e["request_id"]: e for e in _entries(client, admin, outcome="denied")}
    assert denied["no-creds"]["status_code"] == 401
    assert denied["no-creds"]["actor"] == "anonymous"
    assert denied["wrong-role"]["status_code"] == 403
    assert denied["wrong-role"]["role"] == "sales"


def test_a_failed_write_is_audited_but_changes_nothing(
    client: TestClient, auth_headers: Headers
) -> None:
    admin = auth_headers("admin")
    before = len(client.get("/api/v1/keys", headers=admin).json()["items"])
    client.post(
        "/api/v1/keys",
        json={"name": "", "role": "sales"},
        headers={**admin, "X-Request-ID": "bad-write"},
    )
    failed = _entries(client, admin, outcome="failed")
    assert failed[0]["request_id"] == "bad-write" and failed[0]["status_code"] == 422
    assert len(client.get("/api/v1/keys", headers=admin).json()["items"]) == before


def test_reads_are_not_audited(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin")
    client.get("/api/v1/auth/me", headers={**admin, "X-Request-ID": "just-reading"})
    assert all(e["request_id"] != "just-reading" for e in _entries(client, admin, limit=500))


def test_audit_pages_newest_first_and_verifies(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin")
    for i in range(3):
        client.post("/api/v1/keys", json={"name": f"k{i}", "role": "sales"}, headers=admin)
    first = client.get("/api/v1/audit", params={"limit": 2}, headers=admin).json()
    assert first["items"][0]["seq"] > first["items"][1]["seq"]
    second = client.get(
        "/api/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin
    ).json()
    assert second["items"][0]["seq"] < first["items"][1]["seq"]
    verified = client.get("/api/v1/audit/verify", headers=admin).json()
    assert verified["ok"] is True and verified["entries_checked"] >= 3


def test_a_long_or_odd_request_is_still_audited(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin")
    long_id = "k" * 300
    answer = client.delete(f"/api/v1/keys/{long_id}", headers={"X-Request-ID": "long-path"})
    assert answer.status_code == 401
    denied = _entries(client, admin, outcome="denied")
    entry = next(e for e in denied if e["request_id"] == "long-path")
    assert len(entry["resource_id"]) == 200
    assert client.get("/api/v1/audit/verify", headers=admin).json()["ok"] is True
