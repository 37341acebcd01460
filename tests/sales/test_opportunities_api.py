"""Opportunities through the HTTP API: accounts named by domain, exact Decimal amounts, the
primary contact's lifecycle (opportunity, then customer), refusals, cursor pagination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.sales.factories import (
    SALES,
    Headers,
    all_items,
    capture,
    contact,
    created,
    lead_at,
    problem,
    unique,
)

OPPS = f"{SALES}/opportunities"
OPENED = "2026-03-02T09:00:00Z"


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


@pytest.fixture
def buyer(client: TestClient, sales: dict[str, str]) -> dict[str, Any]:
    """A captured lead with a business e-mail: their company's account now exists."""
    domain = f"{unique('acct')}.example"
    result = capture(client, sales, lead_at(domain, local="grace"))
    return {"domain": domain, "contact_id": result["contact_id"]}


def deal(buyer: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {
        "account_domain": buyer["domain"],
        "primary_contact_id": buyer["contact_id"],
        "name": "Engine licence",
        "amount": "12000.50",
        "currency": "EUR",
        "stage": "proposal",
        "opened_at": OPENED,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def opportunity_count(client: TestClient, sales: dict[str, str]) -> int:
    return len(all_items(client, sales, OPPS, limit=500))


def test_an_opportunity_on_an_account_found_by_domain(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    body = deal(buyer, account_domain=f"  {buyer['domain'].upper()} ", external_id="crm-1")
    opp = created(client.post(OPPS, json=body, headers=sales))
    assert opp["amount"] == "12000.50"  # a string, to the cent: never a float
    assert opp["currency"] == "EUR"
    assert opp["is_closed"] is False
    assert opp["primary_contact_id"] == buyer["contact_id"]
    assert opp["external_id"] == "crm-1"
    assert datetime.fromisoformat(opp["opened_at"]) == datetime(2026, 3, 2, 9, tzinfo=UTC)

    accounts = client.get("/api/v1/accounts", headers=sales).json()["items"]
    assert opp["account_id"] == next(a["id"] for a in accounts if a["domain"] == buyer["domain"])
    again = created(client.get(f"{OPPS}/{opp['id']}", headers=sales), 200)
    assert again == opp
    by_id = created(
        client.post(
            OPPS, json=deal(buyer, account_domain=None, account_id=opp["account_id"]), headers=sales
        )
    )
    assert by_id["account_id"] == opp["account_id"]


@pytest.mark.parametrize("amount", ["0.10", "1234567.89", "99999999.99", "0"])
def test_amounts_are_exact_decimals(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any], amount: str
) -> None:
    opp = created(client.post(OPPS, json=deal(buyer, amount=amount), headers=sales))
    stored = client.get(f"{OPPS}/{opp['id']}", headers=sales).json()["amount"]
    assert Decimal(stored) == Decimal(amount)
    assert Decimal(stored).as_tuple().exponent == -2 or Decimal(stored) == 0


def test_the_largest_accepted_amount_stays_exact(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    opp = created(client.post(OPPS, json=deal(buyer, amount="9999999999999999.99"), headers=sales))
    stored = client.get(f"{OPPS}/{opp['id']}", headers=sales).json()["amount"]
    assert Decimal(stored) == Decimal("9999999999999999.99")


def test_opening_a_deal_makes_the_primary_contact_an_opportunity(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    opened = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()  # after the capture
    created(client.post(OPPS, json=deal(buyer, opened_at=opened), headers=sales))
    person = contact(client, sales, buyer["contact_id"])
    assert person["stage"] == "opportunity"
    last = person["stage_history"][-1]
    assert (last["from_stage"], last["to_stage"], last["source"]) == (
        "lead",
        "opportunity",
        "opportunity",
    )
    assert "Engine licence" in last["reason"]


def test_winning_a_deal_makes_the_contact_a_customer(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    opened = datetime.now(UTC) + timedelta(hours=1)  # after the capture: the history is dated
    closed = opened + timedelta(days=3)
    body = deal(buyer, opened_at=opened.isoformat())
    opp = created(client.post(OPPS, json=body, headers=sales))
    win = {
        "is_closed": True,
        "is_closed_won": True,
        "stage": "won",
        "closed_at": closed.isoformat(),
    }
    won = created(client.patch(f"{OPPS}/{opp['id']}", json=win, headers=sales), 200)
    assert (won["is_closed"], won["is_closed_won"], won["stage"]) == (True, True, "won")
    assert won["amount"] == "12000.50"  # untouched fields stay

    person = contact(client, sales, buyer["contact_id"])
    assert person["stage"] == "customer"
    history = [(h["from_stage"], h["to_stage"]) for h in person["stage_history"]]
    assert history == [(None, "lead"), ("lead", "opportunity"), ("opportunity", "customer")]
    moved = {
        h["to_stage"]: datetime.fromisoformat(h["changed_at"]) for h in person["stage_history"]
    }
    assert moved["opportunity"] == opened
    assert moved["customer"] == closed


def test_the_stage_history_keeps_its_order_for_a_deal_entered_late(
    client: TestClient, sales: dict[str, str]
) -> None:
    # Four people captured now whose deals were opened and won last week (entered late
    # into the CRM): each history must still read lead → opportunity → customer.
    for _ in range(4):
        result = capture(client, sales, lead_at(f"{unique('late')}.example"))
        body = {
            "account_id": contact(client, sales, result["contact_id"])["account_id"],
            "primary_contact_id": result["contact_id"],
            "name": "Late deal",
            "amount": "10.00",
            "currency": "USD",
            "stage": "negotiation",
            "opened_at": "2026-01-05T10:00:00Z",
        }
        opp = created(client.post(OPPS, json=body, headers=sales))
        win = {"is_closed": True, "is_closed_won": True, "closed_at": "2026-01-06T10:00:00Z"}
        created(client.patch(f"{OPPS}/{opp['id']}", json=win, headers=sales), 200)
        history = contact(client, sales, result["contact_id"])["stage_history"]
        assert [h["to_stage"] for h in history] == ["lead", "opportunity", "customer"]


def test_a_contact_further_along_is_not_moved_back(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    first = created(client.post(OPPS, json=deal(buyer), headers=sales))
    win = {"is_closed": True, "is_closed_won": True}
    created(client.patch(f"{OPPS}/{first['id']}", json=win, headers=sales), 200)
    created(client.post(OPPS, json=deal(buyer, name="Upsell"), headers=sales))
    person = contact(client, sales, buyer["contact_id"])
    assert person["stage"] == "customer"
    assert [h["to_stage"] for h in person["stage_history"]].count("opportunity") == 1


def test_a_disqualified_contact_stays_disqualified(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    dq = client.post(
        f"/api/v1/contacts/{buyer['contact_id']}/stage",
        json={"stage": "disqualified", "reason": "student"},
        headers=sales,
    )
    assert dq.status_code == 200, dq.text
    created(client.post(OPPS, json=deal(buyer), headers=sales))
    assert contact(client, sales, buyer["contact_id"])["stage"] == "disqualified"


def test_a_deal_without_a_primary_contact_moves_nobody(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    opp = created(client.post(OPPS, json=deal(buyer, primary_contact_id=None), headers=sales))
    assert opp["primary_contact_id"] is None
    assert contact(client, sales, buyer["contact_id"])["stage"] == "lead"


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "eur"}, "body.currency"),
        ({"currency": "EURO"}, "body.currency"),
        ({"amount": "-1.00"}, "body.amount"),
        ({"amount": "1.005"}, "body.amount"),
        ({"amount": "ten"}, "body.amount"),
        ({"is_closed_won": True}, "body"),  # won needs closed
        ({"is_closed": True, "closed_at": "2026-03-01T09:00:00Z"}, "body"),  # before opened_at
        ({"opened_at": "2026-03-02T09:00:00"}, "body.opened_at"),  # naive
        ({"account_domain": None}, "body"),  # no account named at all
        ({"primary_contact_id": str(uuid.uuid4())}, "body.primary_contact_id"),
        ({"account_domain": "nobody.example"}, "body.account_domain"),
        ({"account_domain": None, "account_id": str(uuid.uuid4())}, "body.account_id"),
    ],
)
def test_bad_opportunities_are_refused_and_leave_nothing(
    client: TestClient,
    sales: dict[str, str],
    buyer: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    body = {k: v for k, v in (deal(buyer) | change).items() if v is not None}
    answer = client.post(OPPS, json=body, headers=sales)
    assert problem(answer) == [field]
    assert opportunity_count(client, sales) == 0
    assert contact(client, sales, buyer["contact_id"])["stage"] == "lead"


def test_the_unknown_account_error_names_the_domain(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    answer = client.post(OPPS, json=deal(buyer, account_domain="Nobody.Example"), headers=sales)
    assert problem(answer) == ["body.account_domain"]
    assert "nobody.example" in answer.json()["errors"][0]["message"]


def test_an_external_id_is_used_once(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    created(client.post(OPPS, json=deal(buyer, external_id="sf-006"), headers=sales))
    problem(client.post(OPPS, json=deal(buyer, external_id="sf-006"), headers=sales), 409)
    assert opportunity_count(client, sales) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"is_closed_won": True}, "body.is_closed_won"),
        ({"is_closed": True, "closed_at": "2026-03-01T00:00:00Z"}, "body.closed_at"),
        ({"amount": None}, "body.amount"),
        ({"stage": None}, "body.stage"),
        ({"currency": "usd"}, "body.currency"),
        ({"primary_contact_id": str(uuid.uuid4())}, "body.primary_contact_id"),
        ({"opened_at": "2026-01-01T00:00:00Z"}, "body.opened_at"),  # not a field of updates
    ],
)
def test_bad_updates_are_refused_and_change_nothing(
    client: TestClient,
    sales: dict[str, str],
    buyer: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    opp = created(client.post(OPPS, json=deal(buyer), headers=sales))
    answer = client.patch(f"{OPPS}/{opp['id']}", json=change, headers=sales)
    assert problem(answer) == [field]
    assert client.get(f"{OPPS}/{opp['id']}", headers=sales).json() == opp
    assert contact(client, sales, buyer["contact_id"])["stage"] == "opportunity"


def test_an_unknown_opportunity_is_404(client: TestClient, sales: dict[str, str]) -> None:
    problem(client.get(f"{OPPS}/{uuid.uuid4()}", headers=sales), 404)
    problem(client.patch(f"{OPPS}/{uuid.uuid4()}", json={"stage": "x"}, headers=sales), 404)


def test_the_list_pages_through_every_deal_newest_first(
    client: TestClient, sales: dict[str, str], buyer: dict[str, Any]
) -> None:
    made = [
        created(client.post(OPPS, json=deal(buyer, name=f"Deal {n}"), headers=sales))["id"]
        for n in range(5)
    ]
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = created(client.get(OPPS, params=params, headers=sales), 200)
        pages.append(page["items"])
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [o["id"] for p in pages for o in p]
    assert sorted(seen) == sorted(made)
    keys = [(o["created_at"], o["id"]) for p in pages for o in p]
    assert keys == sorted(keys, reverse=True)


def test_the_list_filters_by_account(client: TestClient, sales: dict[str, str]) -> None:
    one = capture(client, sales, lead_at(f"{unique('one')}.example"))
    two = capture(client, sales, lead_at(f"{unique('two')}.example"))
    ids = {}
    for person in (one, two):
        account_id = contact(client, sales, person["contact_id"])["account_id"]
        body = {
            "account_id": account_id,
            "name": "Deal",
            "amount": "1.00",
            "currency": "USD",
            "stage": "new",
            "opened_at": OPENED,
        }
        ids[account_id] = created(client.post(OPPS, json=body, headers=sales))["id"]
    for account_id, opp_id in ids.items():
        listed = client.get(OPPS, params={"account_id": account_id}, headers=sales).json()
        assert [o["id"] for o in listed["items"]] == [opp_id]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJhZnRlciI6IDF9"])
def test_a_foreign_cursor_is_refused(
    client: TestClient, sales: dict[str, str], cursor: str
) -> None:
    assert problem(client.get(OPPS, params={"cursor": cursor}, headers=sales)) == ["query.cursor"]
