"""API keys and OAuth 2.0 client credentials through HTTP, as a client would use them."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from revhub.core.auth import service as auth
from revhub.core.db import Database, utcnow
from tests.factories import ApiKeyFactory

Headers = Callable[[str], dict[str, str]]


def test_admin_creates_a_key_shown_once_that_then_works(
    client: TestClient, auth_headers: Headers
) -> None:
    admin = auth_headers("admin")
    created = client.post(
        "/api/v1/keys", json={"name": "hubspot-sync", "role": "sales"}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith("rhk_") and body["role"] == "sales"
    assert body["expires_at"] is not None
    me = client.get("/api/v1/auth/me", headers={"X-API-Key": body["key"]})
    assert me.json()["name"] == "hubspot-sync"
    listed = client.get("/api/v1/keys", headers=admin).json()["items"]
    mine = next(k for k in listed if k["id"] == body["id"])
    assert "key" not in mine and mine["last_used_at"] is not None


def test_a_revoked_key_stops_working_at_once(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin")
    body = client.post(
        "/api/v1/keys", json={"name": "tmp", "role": "product"}, headers=admin
    ).json()
    victim = {"X-API-Key": body["key"]}
    assert client.get("/api/v1/auth/me", headers=victim).status_code == 200
    assert client.delete(f"/api/v1/keys/{body['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/auth/me", headers=victim).status_code == 401
    listed = client.get("/api/v1/keys", params={"include_revoked": True}, headers=admin).json()
    assert any(k["id"] == body["id"] and k["revoked_at"] for k in listed["items"])
    active = client.get("/api/v1/keys", headers=admin).json()["items"]
    assert all(k["id"] != body["id"] for k in active)


def test_revoking_an_unknown_key_is_404(client: TestClient, auth_headers: Headers) -> None:
    response = client.delete(
        "/api/v1/keys/00000000-0000-4000-8000-000000000000", headers=auth_headers("admin")
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("/not-found")


def test_keys_page_with_an_opaque_cursor(client: TestClient, api_keys: ApiKeyFactory) -> None:
    _admin, token = api_keys.create(role="admin")
    for _ in range(4):
        api_keys.create(role="sales")
    headers = {"X-API-Key": token}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/keys", params=params, headers=headers).json()
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 5


def test_client_credentials_grant_gives_a_bearer_token(
    client: TestClient, api_keys: ApiKeyFactory
) -> None:
    key, secret = api_keys.create(role="success")
    response = client.post(
        "/api/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": str(key.id),
            "client_secret": secret,
        },
    )
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.json()["via"] == "oauth"
    assert set(me.json()["scopes"]) == {"success:read", "success:write"}


def test_client_credentials_in_http_basic_and_narrowed_scope(
    client: TestClient, api_keys: ApiKeyFactory
) -> None:
    key, secret = api_keys.create(role="admin")
    basic = base64.b64encode(f"{key.id}:{secret}".encode()).decode()
    response = client.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "sales:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.json()["scope"] == "sales:read"
    bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert client.get("/api/v1/keys", headers=bearer).status_code == 403


def test_token_endpoint_errors_follow_rfc_6749(client: TestClient, api_keys: ApiKeyFactory) -> None:
    key, secret = api_keys.create(role="sales")
    wrong = client.post(
        "/api/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": str(key.id),
            "client_secret": secret + "x",
        },
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["content-type"] == "application/problem+json"
    greedy = client.post(
        "/api/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": str(key.id),
            "client_secret": secret,
            "scope": "finance:write",
        },
    )
    assert greedy.status_code == 400 and greedy.json()["error"] == "invalid_scope"
    grant = client.post("/api/v1/oauth/token", data={"grant_type": "password"})
    assert grant.status_code == 422
    assert grant.json()["errors"][0]["field"] == "body.grant_type"


def test_api_key_also_works_as_a_bearer_token(client: TestClient, api_keys: ApiKeyFactory) -> None:
    _key, secret = api_keys.create(role="marketing")
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["via"] == "api_key"
    basic = client.get("/api/v1/auth/me", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert basic.status_code == 401


def test_a_key_checked_a_moment_ago_skips_the_database(
    client: TestClient, auth_headers: Headers, db: Database
) -> None:
    headers = auth_headers("sales")
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "api_key" in s]


def test_a_key_revoked_by_another_process_is_refused_within_a_second(
    client: TestClient, auth_headers: Headers, session: Session, api_keys: ApiKeyFactory
) -> None:
    """As ``revhub keys revoke`` or another API process would: straight in the database."""
    key, token = api_keys.create(role="sales")
    headers = {"X-API-Key": token}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    auth.revoke_key(session, key_id=key.id, now=utcnow())
    session.commit()
    time.sleep(auth.KEY_RECHECK_SECONDS + 0.1)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
