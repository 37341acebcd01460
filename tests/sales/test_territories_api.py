"""Territories are managed over the API; changed rules decide the next assignment."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

SALES = "/api/v1/integrations/sales"


def test_a_changed_territory_routes_the_next_lead(
    client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    headers = auth_headers("sales")
    emea = client.post(f"{SALES}/territories", json={"name": "EMEA", "regions": ["EMEA"]},
                       headers=headers).json()  # fmt: skip
    client.post(f"{SALES}/reps", json={"name": "Eva", "email": "eva@x.example",
                                       "territory_id": emea["id"]}, headers=headers)  # fmt: skip
    lead = {"email": "a@brazil.example", "first_name": "A", "company": "B", "country": "BR"}
    queued = client.post(f"{SALES}/leads", json=lead, headers=headers).json()
    assert queued["steps"]["assignment"]["queued"] is True
    changed = client.patch(
        f"{SALES}/territories/{emea['id']}",
        json={"name": "EMEA + LATAM", "regions": ["EMEA", "LATAM"]},
        headers=headers,
    )
    assert changed.status_code == 200 and changed.json()["regions"] == ["EMEA", "LATAM"]
    routed = client.post(f"{SALES}/leads", json=lead | {"email": "c@brazil.example"},
                         headers=headers).json()  # fmt: skip
    assert routed["steps"]["assignment"]["territory"] == "EMEA + LATAM"
    bad = client.patch(f"{SALES}/territories/{emea['id']}",
                       json={"min_employees": 10, "max_employees": 5}, headers=headers)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.max_employees"
    assert client.get(f"{SALES}/territories", headers=headers).json()[0]["max_employees"] is None
