"""Territory assignment through the HTTP API (assignment.py's rules): territory precedence by
priority, capacity-weighted round-robin inside a territory, the fallback queue, and
reassignment when a rep is deactivated or moved."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.sales.factories import (
    SALES,
    Headers,
    capture,
    created,
    lead_at,
    problem,
    rep,
    territory,
    unique,
)


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


@pytest.fixture
def world(client: TestClient, sales: dict[str, str]) -> dict[str, Any]:
    """Enterprise (≥ 1,000 staff, priority 1) before US (priority 5) before EMEA (priority 10);
    EMEA has two reps, capacities 2 and 1 (the capacity-2 rep created first)."""
    enterprise = territory(client, sales, name="Enterprise", priority=1, min_employees=1000)
    us = territory(client, sales, name="US", priority=5, countries=["US"])
    emea = territory(client, sales, name="EMEA", priority=10, regions=["EMEA"])
    return {
        "enterprise": enterprise,
        "us": us,
        "emea": emea,
        "ent_rep": rep(client, sales, enterprise["id"], name="Erin Enterprise"),
        "us_rep": rep(client, sales, us["id"], name="Uma US"),
        "big": rep(client, sales, emea["id"], name="Bea Big", capacity=2),
        "small": rep(client, sales, emea["id"], name="Sam Small", capacity=1),
    }


def assigned(
    client: TestClient, sales: dict[str, str], country: str | None, employees: int | None
) -> dict[str, Any]:
    """Capture a lead of a new company and return its ``steps.assignment``."""
    body = lead_at(f"{unique('co')}.example", country=country, employee_count=employees)
    return capture(client, sales, body)["steps"]["assignment"]


def reps_by_id(client: TestClient, sales: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = created(client.get(f"{SALES}/reps", headers=sales), 200)
    return {r["id"]: r for r in answer}


def test_territories_list_in_the_order_assignment_tries_them(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    listed = created(client.get(f"{SALES}/territories", headers=sales), 200)
    assert [t["name"] for t in listed] == ["Enterprise", "US", "EMEA"]
    assert listed[2]["regions"] == ["EMEA"]
    assert listed[0]["min_employees"] == 1000


@pytest.mark.parametrize(
    ("country", "employees", "territory_key", "rep_key"),
    [
        ("US", 50, "us", "us_rep"),  # only US matches
        ("US", 5000, "enterprise", "ent_rep"),  # US and Enterprise match: priority 1 wins
        ("GB", 5000, "enterprise", "ent_rep"),  # EMEA and Enterprise match
        ("DE", 1000, "enterprise", "ent_rep"),  # min_employees is inclusive
        ("DE", 999, "emea", "big"),  # one short of Enterprise: EMEA, first turn to capacity 2
        ("United States", 20, "us", "us_rep"),  # the country is cleaned to US first
    ],
)
def test_the_lowest_priority_number_among_matching_territories_wins(
    client: TestClient,
    sales: dict[str, str],
    world: dict[str, Any],
    country: str,
    employees: int,
    territory_key: str,
    rep_key: str,
) -> None:
    step = assigned(client, sales, country, employees)
    assert step["territory"] == world[territory_key]["name"]
    assert step["rep_id"] == world[rep_key]["id"]
    assert step["rep_name"] == world[rep_key]["name"]
    assert step["queued"] is False


@pytest.mark.parametrize(
    ("country", "employees"),
    [("BR", 50), ("JP", 200), (None, 10), ("Atlantis", 10)],
)
def test_a_lead_no_territory_matches_waits_in_the_fallback_queue(
    client: TestClient,
    sales: dict[str, str],
    world: dict[str, Any],
    country: str | None,
    employees: int,
) -> None:
    step = assigned(client, sales, country, employees)
    assert step == {
        "rep_id": None,
        "rep_name": None,
        "territory": None,
        "queued": True,
        "reason": step["reason"],
    }
    assert "fallback queue" in step["reason"]


def test_a_matching_territory_without_an_active_rep_is_skipped(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    territory(client, sales, name="APAC", priority=0, regions=["APAC"])  # nobody works it
    assert assigned(client, sales, "JP", 50)["queued"] is True

    off = client.patch(
        f"{SALES}/reps/{world['ent_rep']['id']}", json={"active": False}, headers=sales
    )
    assert off.status_code == 200, off.text
    # Enterprise matches first but has nobody active: the next matching territory takes it.
    step = assigned(client, sales, "US", 5000)
    assert (step["territory"], step["rep_id"]) == ("US", world["us_rep"]["id"])


def test_capacity_two_takes_two_of_every_three_leads(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    big, small = world["big"]["id"], world["small"]["id"]
    owners = [assigned(client, sales, "FR", 100)["rep_id"] for _ in range(9)]
    assert set(owners) == {big, small}
    for n in (3, 6, 9):  # after every third lead the split is exactly 2:1
        assert owners[:n].count(big) == 2 * n // 3, owners
        assert owners[:n].count(small) == n // 3, owners
    counts = reps_by_id(client, sales)
    assert (counts[big]["assigned_count"], counts[small]["assigned_count"]) == (6, 3)
    assert counts[world["us_rep"]["id"]]["assigned_count"] == 0


def test_equal_capacities_alternate(client: TestClient, sales: dict[str, str]) -> None:
    nordics = territory(client, sales, name="Nordics", countries=["SE", "NO", "DK"])
    first = rep(client, sales, nordics["id"], capacity=3)
    second = rep(client, sales, nordics["id"], capacity=3)
    owners = [assigned(client, sales, "SE", 80)["rep_id"] for _ in range(6)]
    assert owners.count(first["id"]) == owners.count(second["id"]) == 3
    assert all(a != b for a, b in itertools.pairwise(owners)), owners


def test_industry_criteria_compare_without_case(client: TestClient, sales: dict[str, str]) -> None:
    fintech = territory(client, sales, name="Fintech", industries=["FinTech"], priority=1)
    banker = rep(client, sales, fintech["id"])
    body = lead_at(f"{unique('bank')}.example", industry="  fintech ", country="GB")
    assert capture(client, sales, body)["steps"]["assignment"]["rep_id"] == banker["id"]
    other = lead_at(f"{unique('shop')}.example", industry="Retail", country="GB")
    assert capture(client, sales, other)["steps"]["assignment"]["queued"] is True


def test_a_captured_again_lead_keeps_its_owner(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    body = lead_at(f"{unique('keep')}.example", country="GB", employee_count=100)
    first = capture(client, sales, body)["steps"]["assignment"]
    again = capture(client, sales, body | {"capture_type": "email_signup"})["steps"]["assignment"]
    assert again["rep_id"] == first["rep_id"] == world["big"]["id"]
    assert again["territory"] == "EMEA"
    assert "kept" in again["reason"]
    # Keeping an owner is not a new turn of the round-robin.
    assert reps_by_id(client, sales)[world["big"]["id"]]["assigned_count"] == 1


def test_deactivating_a_rep_hands_their_leads_to_the_next_in_line(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    big, small = world["big"]["id"], world["small"]["id"]
    bodies = [lead_at(f"{unique('eu')}.example", country="NL", employee_count=60) for _ in range(3)]
    owners = [capture(client, sales, b)["steps"]["assignment"]["rep_id"] for b in bodies]
    assert sorted(owners, key=[big, small].index) == [big, big, small]

    change = client.patch(f"{SALES}/reps/{big}", json={"active": False}, headers=sales)
    assert change.status_code == 200, change.text
    assert change.json()["reassigned_leads"] == 2
    assert change.json()["rep"]["active"] is False

    # The new owner shows when the same people are captured again: kept, now with Sam.
    for body in bodies:
        step = capture(client, sales, body)["steps"]["assignment"]
        assert (step["rep_id"], step["territory"], step["queued"]) == (small, "EMEA", False)
        assert "kept" in step["reason"]
    listed = reps_by_id(client, sales)
    assert listed[small]["assigned_count"] == 3
    assert listed[big]["active"] is False

    # New leads only go to active reps.
    assert assigned(client, sales, "NL", 60)["rep_id"] == small
    # Deactivating again moves nothing: the rep owns no lead any more.
    again = client.patch(f"{SALES}/reps/{big}", json={"active": False}, headers=sales)
    assert again.json()["reassigned_leads"] == 0


def test_a_deactivated_reps_leads_queue_when_nobody_else_matches(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    body = lead_at(f"{unique('us')}.example", country="US", employee_count=10)
    assert capture(client, sales, body)["steps"]["assignment"]["rep_id"] == world["us_rep"]["id"]
    change = client.patch(
        f"{SALES}/reps/{world['us_rep']['id']}", json={"active": False}, headers=sales
    )
    assert change.json()["reassigned_leads"] == 1
    step = capture(client, sales, body)["steps"]["assignment"]
    assert (step["rep_id"], step["queued"]) == (None, True)

    # A queued lead finds an owner on its next capture once someone works the territory.
    newcomer = rep(client, sales, world["us"]["id"], name="Nia New")
    step = capture(client, sales, body)["steps"]["assignment"]
    assert (step["rep_id"], step["rep_name"], step["queued"]) == (newcomer["id"], "Nia New", False)


def test_moving_a_rep_to_another_territory_reassigns_their_leads(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    body = lead_at(f"{unique('mv')}.example", country="US", employee_count=10)
    capture(client, sales, body)
    us_rep = world["us_rep"]["id"]
    moved = client.patch(
        f"{SALES}/reps/{us_rep}", json={"territory_id": world["emea"]["id"]}, headers=sales
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["rep"]["territory_id"] == world["emea"]["id"]
    assert moved.json()["reassigned_leads"] == 1
    # Nobody else works the US: queued, not left with a rep of another territory.
    assert capture(client, sales, body)["steps"]["assignment"]["queued"] is True

    # A capacity change alone moves nothing.
    cap = client.patch(f"{SALES}/reps/{us_rep}", json={"capacity": 5}, headers=sales)
    assert (cap.json()["rep"]["capacity"], cap.json()["reassigned_leads"]) == (5, 0)


def test_reactivating_a_rep_gives_them_new_leads_again(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    us_rep = world["us_rep"]["id"]
    client.patch(f"{SALES}/reps/{us_rep}", json={"active": False}, headers=sales)
    assert assigned(client, sales, "US", 10)["queued"] is True
    back = client.patch(f"{SALES}/reps/{us_rep}", json={"active": True}, headers=sales)
    assert back.json()["rep"]["active"] is True
    assert back.json()["reassigned_leads"] == 0
    assert assigned(client, sales, "US", 10)["rep_id"] == us_rep


# --- refusals --------------------------------------------------------------------------------


def test_a_rep_in_an_unknown_territory_is_refused(
    client: TestClient, sales: dict[str, str]
) -> None:
    body = {"name": "Lost Rep", "email": "lost@sales.example", "territory_id": str(uuid.uuid4())}
    assert problem(client.post(f"{SALES}/reps", json=body, headers=sales)) == ["body.territory_id"]
    assert client.get(f"{SALES}/reps", headers=sales).json() == []


def test_moving_a_rep_to_an_unknown_territory_is_refused(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    rep_id = world["us_rep"]["id"]
    answer = client.patch(
        f"{SALES}/reps/{rep_id}", json={"territory_id": str(uuid.uuid4())}, headers=sales
    )
    assert problem(answer) == ["body.territory_id"]
    assert reps_by_id(client, sales)[rep_id]["territory_id"] == world["us"]["id"]


def test_an_unknown_rep_is_404(client: TestClient, sales: dict[str, str]) -> None:
    missing = client.patch(f"{SALES}/reps/{uuid.uuid4()}", json={"active": False}, headers=sales)
    problem(missing, 404)
    assert problem(
        client.patch(f"{SALES}/reps/not-a-uuid", json={"active": False}, headers=sales)
    ) == ["path.rep_id"]


@pytest.mark.parametrize("name", ["capacity", "active"])
def test_a_rep_field_cannot_be_nulled(
    client: TestClient, sales: dict[str, str], world: dict[str, Any], name: str
) -> None:
    rep_id = world["small"]["id"]
    answer = client.patch(f"{SALES}/reps/{rep_id}", json={name: None}, headers=sales)
    assert problem(answer) == [f"body.{name}"]
    after = reps_by_id(client, sales)[rep_id]
    assert (after["capacity"], after["active"]) == (1, True)


def test_territory_names_are_unique(
    client: TestClient, sales: dict[str, str], world: dict[str, Any]
) -> None:
    again = client.post(f"{SALES}/territories", json={"name": "EMEA"}, headers=sales)
    problem(again, 409)
    assert len(client.get(f"{SALES}/territories", headers=sales).json()) == 3


def test_rep_emails_are_unique_whatever_their_case(
    client: TestClient, sales: dict[str, str]
) -> None:
    first = {"name": "Ann", "email": "ann@sales.example"}
    assert created(client.post(f"{SALES}/reps", json=first, headers=sales))["email"] == (
        "ann@sales.example"
    )
    again = {"name": "Ann Again", "email": "  ANN@Sales.Example "}
    problem(client.post(f"{SALES}/reps", json=again, headers=sales), 409)
    assert [r["name"] for r in client.get(f"{SALES}/reps", headers=sales).json()] == ["Ann"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad", "countries": ["gb"]}, "body.countries.0"),
        ({"name": "Bad", "regions": ["EUROPE"]}, "body.regions.0"),
        ({"name": "Bad", "priority": -1}, "body.priority"),
        ({"name": "Bad", "min_employees": 500, "max_employees": 100}, "body"),
    ],
)
def test_bad_territories_are_refused(
    client: TestClient, sales: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert problem(client.post(f"{SALES}/territories", json=body, headers=sales)) == [field]
    assert client.get(f"{SALES}/territories", headers=sales).json() == []


def test_a_rep_with_long_names_can_still_be_deactivated(
    client: TestClient, sales: dict[str, str]
) -> None:
    # Both names are at their 200-character limit; the territory's holds both quote kinds,
    # so repr() escapes its apostrophes.
    name = ('"Key" accounts: ' + "O'Neil's " * 21)[:200]
    key = territory(client, sales, name=name, countries=["IE"])
    leaving = rep(client, sales, key["id"], name="R" * 200)
    staying = rep(client, sales, key["id"], name="Stay")
    owners = [assigned(client, sales, "IE", 40)["rep_id"] for _ in range(2)]
    assert set(owners) == {leaving["id"], staying["id"]}
    change = client.patch(f"{SALES}/reps/{leaving['id']}", json={"active": False}, headers=sales)
    assert change.status_code == 200, change.text
    assert change.json()["reassigned_leads"] == 1
