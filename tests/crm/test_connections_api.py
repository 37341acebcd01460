"""CRM connections over the HTTP API, as an administrator would set one up."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.crm.conftest import HUBSPOT_TOKEN
from tests.crm.fakes.hubspot import HubSpotState

URL = "/api/v1/crm/connections"
TOKEN = HUBSPOT_TOKEN
Headers = Callable[[str], dict[str, str]]


def test_add_list_and_check_a_connection(
    client: TestClient, auth_headers: Headers, hubspot: tuple[HubSpotState, str]
) -> None:
    state, url = hubspot
    admin = auth_headers("admin")
    body = {"name": "hs", "crm": "hubspot", "base_url": url, "credentials": {"access_token": TOKEN}}
    made = client.post(URL, json=body, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "hs" and TOKEN not in made.text
    assert made.json()["currency"] == "USD"
    listed = client.get(URL, headers=admin)
    assert [c["name"] for c in listed.json()] == ["hs"] and TOKEN not in listed.text
    check = client.get(f"{URL}/hs/check", headers=admin).json()
    assert check["ok"] and check["authenticated"] and check["missing_fields"] == {}
    state.custom_properties["deals"] = set()
    check = client.get(f"{URL}/hs/check", headers=admin).json()
    assert not check["ok"] and "marketing_platform_id" in check["missing_fields"]["deal"]
    state.down = True
    down = client.get(f"{URL}/hs/check", headers=admin)
    assert down.status_code == 502 and down.headers["content-type"] == "application/problem+json"
    assert client.post(URL, json=body, headers=admin).status_code == 409


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Has Spaces"}, "body.name"),
        ({"crm": "zoho"}, "body.crm"),
        ({"base_url": "ftp://x"}, "body.base_url"),
        ({"credentials": {"access_token": 5}}, "body.credentials.access_token"),
        ({"credentials": {}}, "body.credentials.access_token"),
        ({"credentials": {"access_token": "t", "pwd": "x"}}, "body.credentials.pwd"),
        ({"currency": "euro"}, "body.currency"),
    ],
)
def test_bad_connections_are_422_naming_the_field(
    client: TestClient, auth_headers: Headers, change: dict[str, object], field: str
) -> None:
    body = {"name": "hs", "crm": "hubspot", "credentials": {"access_token": "t"}} | change
    answer = client.post(URL, json=body, headers=auth_headers("admin"))
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert client.get(URL, headers=auth_headers("admin")).json() == []


def test_only_administrators_manage_connections(client: TestClient, auth_headers: Headers) -> None:
    sales = auth_headers("sales")
    assert client.get(URL, headers=sales).status_code == 403
    assert client.get(f"{URL}/nope/check", headers=auth_headers("admin")).status_code == 404
