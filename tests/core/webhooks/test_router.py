"""Webhook subscriptions and deliveries over the admin API."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

Headers = Callable[[str], dict[str, str]]


def test_admin_subscribes_and_gets_the_secret_once(
    client: TestClient, auth_headers: Headers
) -> None:
    admin = auth_headers("admin")
    created = client.post(
        "/api/v1/webhooks/subscriptions",
        headers=admin,
        json={
            "name": "braze",
            "url": "https://hooks.example.com/revhub",
            "topics": ["lead-capture", "customer-health"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["active"] is True
    one = client.get(f"/api/v1/webhooks/subscriptions/{body['id']}", headers=admin).json()
    assert "secret" not in one and one["topics"] == ["customer-health", "lead-capture"]
    listed = client.get("/api/v1/webhooks/subscriptions", headers=admin).json()["items"]
    assert [s["id"] for s in listed] == [body["id"]]
    deliveries = client.get(
        f"/api/v1/webhooks/subscriptions/{body['id']}/deliveries", headers=admin
    ).json()
    assert deliveries == {"items": [], "next_cursor": None}
    gone = client.delete(f"/api/v1/webhooks/subscriptions/{body['id']}", headers=admin)
    assert gone.json()["active"] is False


def test_bad_subscriptions_name_the_field(client: TestClient, auth_headers: Headers) -> None:
    admin = auth_headers("admin")
    for body, field in (
        ({"name": "x", "url": "ftp://example.com", "topics": ["lead-capture"]}, "body.url"),
        ({"name": "x", "url": "https://e.com", "topics": ["gossip"]}, "body.topics"),
        ({"name": "x", "url": "https://e.com", "topics": []}, "body.topics"),
        (
            {"name": "x", "url": "https://e.com", "topics": ["platform"], "secret": "short"},
            "body.secret",
        ),
    ):
        answer = client.post("/api/v1/webhooks/subscriptions", headers=admin, json=body)
        assert answer.status_code == 422, body
        assert answer.json()["errors"][0]["field"].startswith(field)


def test_unknown_subscription_and_delivery_are_404(
    client: TestClient, auth_headers: Headers
) -> None:
    admin = auth_headers("admin")
    nobody = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/api/v1/webhooks/subscriptions/{nobody}", headers=admin).status_code == 404
    assert client.get(f"/api/v1/webhooks/deliveries/{nobody}", headers=admin).status_code == 404
    assert (
        client.get(f"/api/v1/webhooks/subscriptions/{nobody}/deliveries", headers=admin).status_code
        == 404
    )


def test_an_overlong_url_is_refused_naming_it(client: TestClient, auth_headers: Headers) -> None:
    answer = client.post(
        "/api/v1/webhooks/subscriptions",
        headers=auth_headers("admin"),
        json={"name": "x", "url": "https://e.com/" + "a" * 2100, "topics": ["platform"]},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.url"
