"""Bad input through HTTP: each mistake gets the status DESIGN.md §3 promises, as a problem
document naming the field at fault, with no stack trace and nothing half-written."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from revhub.api import create_app
from revhub.core.db import Database
from revhub.core.settings import RateLimit, Settings

Headers = Callable[[str], dict[str, str]]
ONE_MIB = 1_048_576
LISTS = ["/api/v1/keys", "/api/v1/audit"]
TOKEN_FORM = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
NUL_KEY = "rhk_\x00" + "k" * 40


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("admin")


@pytest.fixture
def roomy_client(settings: Settings, db: Database) -> Iterator[TestClient]:
    """A client whose buckets no test can empty, not even the token endpoint's per-address
    one that every test shares in Redis: its requests reach the handlers."""
    roomy = RateLimit(rate=1_000_000, burst=10**12)
    update = {"rate_limit": roomy, "rate_limits": {}}
    app = create_app(settings.model_copy(update=update), db=db, check_schema=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """The problem document of ``response``, checked; with ``field``, the one field named."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text and 'File "' not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field], body
    return body


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_malformed_json_is_400_with_a_detail(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/keys",
        content=b'{"name": "x",',
        headers={**admin, "Content-Type": "application/json"},
    )
    body = problem(response, 400)
    assert body["type"].endswith("/malformed-body")
    assert "not valid JSON" in body["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"expires_in_days": "7"}, "body.expires_in_days"),
        ({"expires_in_days": True}, "body.expires_in_days"),
        ({"expires_in_days": 0}, "body.expires_in_days"),
        ({"name": 7}, "body.name"),
        ({"role": "wizard"}, "body.role"),
    ],
    ids=["string-for-int", "bool-for-int", "out-of-range", "int-for-string", "unknown-role"],
)
def test_a_wrong_field_is_422_naming_it(
    client: TestClient, admin: dict[str, str], change: dict[str, object], field: str
) -> None:
    body = {"name": "x", "role": "sales", **change}
    problem(client.post("/api/v1/keys", json=body, headers=admin), 422, field)


def test_an_unknown_field_is_422_asking_to_remove_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/keys", json={"name": "x", "role": "sales", "colour": "red"}, headers=admin
    )
    error = problem(response, 422, "body.colour")["errors"][0]
    assert error["message"] == "unknown field; remove it"


def test_a_rejected_write_leaves_nothing_behind(client: TestClient, admin: dict[str, str]) -> None:
    def key_ids() -> list[str]:
        listed = client.get("/api/v1/keys", params={"include_revoked": True}, headers=admin)
        return [k["id"] for k in listed.json()["items"]]

    before = key_ids()
    for bad in (
        {"name": "x", "role": "sales", "extra": 1},
        {"name": "x", "role": "sales", "expires_in_days": "7"},
        {"name": "", "role": "sales"},
    ):
        assert client.post("/api/v1/keys", json=bad, headers=admin).status_code == 422
    assert key_ids() == before
    assert client.post(
        "/api/v1/keys", json={"name": "x", "role": "sales"}, headers=admin
    ).is_success
    assert len(key_ids()) == len(before) + 1


def test_a_body_over_the_cap_is_413(client: TestClient, admin: dict[str, str]) -> None:
    oversize = json.dumps({"name": "x" * ONE_MIB, "role": "sales"}).encode()
    response = client.post(
        "/api/v1/keys", content=oversize, headers={**admin, "Content-Type": "application/json"}
    )
    assert response.request.headers["content-length"] == str(len(oversize))
    assert problem(response, 413)["type"].endswith("/payload-too-large")


def test_a_chunked_body_over_the_cap_is_413(client: TestClient, admin: dict[str, str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * 65_536
        yield b'", "role": "sales"}'

    response = client.post(
        "/api/v1/keys", content=chunks(), headers={**admin, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    problem(response, 413)


def test_an_unknown_path_is_404(client: TestClient) -> None:
    assert problem(client.get("/nope"), 404)["type"].endswith("/not-found")


def test_a_wrong_method_is_405_with_allow(client: TestClient, admin: dict[str, str]) -> None:
    response = client.put("/api/v1/keys", headers=admin)
    problem(response, 405)
    assert "POST" in response.headers["allow"]


def test_a_wrong_method_is_405_with_every_allowed_method(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.put("/api/v1/keys", headers=admin)
    problem(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "POST"}


def test_a_bad_uuid_in_the_path_is_422_naming_it(client: TestClient, admin: dict[str, str]) -> None:
    problem(client.delete("/api/v1/keys/not-a-uuid", headers=admin), 422, "path.key_id")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        *[pytest.param(path, "!!!", id=f"{path}-garbled") for path in LISTS],
        *[pytest.param(path, _b64({"page": 2}), id=f"{path}-foreign") for path in LISTS],
        *[pytest.param(path, _b64([1, 2]), id=f"{path}-not-an-object") for path in LISTS],
        pytest.param("/api/v1/keys", _b64({"after": "x"}), id="keys-after-not-a-uuid"),
        pytest.param("/api/v1/audit", _b64({"seq": "x"}), id="audit-seq-not-an-int"),
        pytest.param("/api/v1/keys", _b64({"after": 5}), id="keys-after-an-int"),
        pytest.param("/api/v1/audit", _b64({"seq": 10**30}), id="audit-seq-huge"),
        pytest.param(
            "/api/v1/keys",
            _b64({"after": "00000000-0000-4000-8000-000000000000"}),
            id="keys-after-an-unknown-id",
        ),
    ],
)
def test_a_cursor_we_did_not_issue_is_422_naming_it(
    client: TestClient, admin: dict[str, str], path: str, cursor: str
) -> None:
    response = client.get(path, params={"cursor": cursor}, headers=admin)
    problem(response, 422, "query.cursor")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["0", "abc", "501", "1.5"])
def test_a_bad_limit_is_422_naming_it(
    client: TestClient, admin: dict[str, str], path: str, limit: str
) -> None:
    problem(client.get(path, params={"limit": limit}, headers=admin), 422, "query.limit")


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/v1/keys", {"json": {"name": "a\x00b", "role": "sales"}}),
        ("GET", "/api/v1/audit", {"params": {"actor": "a\x00b"}}),
        ("POST", "/api/v1/oauth/token", {"data": {**TOKEN_FORM, "client_id": "a\x00b"}}),
        ("POST", "/api/v1/oauth/token", {"data": {**TOKEN_FORM, "client_secret": NUL_KEY}}),
    ],
    ids=["body", "query", "form-audited", "form-looked-up"],
)
def test_a_nul_character_is_not_a_500(
    roomy_client: TestClient, admin: dict[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = roomy_client.request(method, path, headers=admin, **kwargs)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        problem(response, response.status_code)
