"""``GET /api/v1/integrations/sales/performance`` on a small world built through the API, with
every expected number worked out by hand below (performance.py states the rules).

Stage changes sent through the API are stamped "now", so the period runs to the end of the
current month; everything dated (captures, touchpoints, deals) sits in the two months
before it. The scoring model's MQL criteria are met at capture time by people whose
anonymous engagement was recorded the day before, so those MQL entries are dated too.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.sales.factories import CONTACTS, SALES, Headers, capture, created, lead, problem

PERFORMANCE = f"{SALES}/performance"


def month_start(moment: datetime, back: int = 0) -> datetime:
    year, month = moment.year, moment.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=UTC)


NOW = datetime.now(UTC)
M0 = month_start(NOW)  # this month: stage changes made through the API land here
P2 = month_start(NOW, 1)  # last month
P1 = month_start(NOW, 2)  # the month before: the period's start
END = month_start(M0 + timedelta(days=32))  # first day of next month (exclusive end)


def day(base: datetime, days: int) -> datetime:
    """``days`` after ``base`` at 10:00 UTC (never past the 28th: inside that month)."""
    return base + timedelta(days=days, hours=10)


def iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture
def sales(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("sales")


def engagement(visitor: str, at: datetime) -> list[dict[str, Any]]:
    """Enough behaviour for seed 004's MQL criteria one day later: e-mail engagement
    4 x 20 x 0.5^(1/30) = 78 (>= 70), 3 content pieces, 5 web sessions."""
    base = {"anonymous_id": visitor, "occurred_at": iso(at)}
    return (
        [base | {"channel": "email", "kind": "email_click"} for _ in range(4)]
        + [
            base | {"channel": "content", "kind": "content_download", "content_id": f"doc-{n}"}
            for n in range(3)
        ]
        + [base | {"channel": "web", "kind": "web_session"} for _ in range(5)]
    )


def touch(client: TestClient, sales: dict[str, str], items: list[dict[str, Any]]) -> None:
    body = created(
        client.post(f"{SALES}/touchpoints/bulk", json={"touchpoints": items}, headers=sales), 200
    )
    assert body["rejected"] == 0, body


def move(client: TestClient, sales: dict[str, str], contact_id: str, stage: str) -> None:
    answer = client.post(
        f"{CONTACTS}/{contact_id}/stage",
        json={"stage": stage, "reason": "sales review"},
        headers=sales,
    )
    assert answer.status_code == 200, answer.text


def opportunity(client: TestClient, sales: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Deal", "stage": "proposal"} | fields
    return created(client.post(f"{SALES}/opportunities", json=body, headers=sales))


@pytest.fixture
def world(client: TestClient, sales: dict[str, str]) -> dict[str, Any]:
    """Five people, four deals.

    ==== ======================= ========= ===== ========================================
    who  captured (lead)         source    qual  then
    ==== ======================= ========= ===== ========================================
    Ada  P1+5d, campaign (MQL)   webinar   100   deal 1 opened P1+15d (opportunity), won
                                                 P1+25d (customer)
    Bob  P2+3d (MQL)             webinar    95   deal 2 opened P2+5d (opportunity); a
                                                 webinar touch at P2+20d
    Cy   P2+6d (MQL)             referral   90   SQL now (API); deal 3 on his account,
                                                 no primary contact, opened P2+8d
    Dee  P1+8d                   (none)     90   MQL now (API)
    Eve  P1-10d (before period)  webinar   100   MQL now, SQL now (API)
    ==== ======================= ========= ===== ========================================

    Ada, Bob and Cy were anonymous visitors engaged the day before their capture (so the
    capture's rescore makes them MQLs at the capture time); Ada also registered for the
    webinar campaign at P1+3d, her first touch. Deal 4 (Dee's account) opened P1-3d, before
    the period. Quality: Bob has no phone (-5), Cy no job title (-10), Dee no source (-10).
    """
    campaign = created(
        client.post(
            f"{SALES}/campaigns",
            json={"key": "perf-webinar", "name": "Perf webinar", "channel": "webinar"},
            headers=sales,
        )
    )
    registration = {
        "anonymous_id": "visitor-ada",
        "campaign": "perf-webinar",
        "channel": "webinar",
        "kind": "webinar_registration",
        "occurred_at": iso(day(P1, 3)),
    }
    touch(client, sales, [registration, *engagement("visitor-ada", day(P1, 4))])
    touch(client, sales, engagement("visitor-bob", day(P2, 2)))
    touch(client, sales, engagement("visitor-cy", day(P2, 5)))

    people = {
        "ada": lead(
            email="ada@alpha.example",
            company="Alpha Ltd",
            anonymous_id="visitor-ada",
            campaign="perf-webinar",
            captured_at=iso(day(P1, 5)),
        ),
        "bob": lead(
            email="bob@beta.example",
            first_name="Bob",
            company="Beta GmbH",
            job_title="Head of Sales",
            phone=None,
            anonymous_id="visitor-bob",
            captured_at=iso(day(P2, 3)),
        ),
        "cy": lead(
            email="cy@gamma.example",
            first_name="Cy",
            company="Gamma BV",
            job_title=None,
            lead_source="referral",
            anonymous_id="visitor-cy",
            captured_at=iso(day(P2, 6)),
        ),
        "dee": lead(
            email="dee@delta.example",
            first_name="Dee",
            company="Delta SA",
            lead_source=None,
            captured_at=iso(day(P1, 8)),
        ),
        "eve": lead(
            email="eve@epsilon.example",
            first_name="Eve",
            company="Epsilon AB",
            captured_at=iso(day(P1, -10)),
        ),
    }
    results = {who: capture(client, sales, body) for who, body in people.items()}
    ids = {who: r["contact_id"] for who, r in results.items()}
    steps = {who: r["steps"] for who, r in results.items()}
    assert {who: s["scoring"]["stage"] for who, s in steps.items()} == {
        "ada": "mql",
        "bob": "mql",
        "cy": "mql",
        "dee": "lead",
        "eve": "lead",
    }
    assert {who: s["validation"]["quality_score"] for who, s in steps.items()} == {
        "ada": 100,
        "bob": 95,
        "cy": 90,
        "dee": 90,
        "eve": 100,
    }

    move(client, sales, ids["cy"], "sql")
    move(client, sales, ids["dee"], "mql")
    move(client, sales, ids["eve"], "mql")
    move(client, sales, ids["eve"], "sql")

    won = opportunity(
        client,
        sales,
        account_domain="alpha.example",
        primary_contact_id=ids["ada"],
        amount="1000.00",
        currency="USD",
        opened_at=iso(day(P1, 15)),
    )
    closing = {"is_closed": True, "is_closed_won": True, "closed_at": iso(day(P1, 25))}
    created(client.patch(f"{SALES}/opportunities/{won['id']}", json=closing, headers=sales), 200)
    opportunity(
        client,
        sales,
        account_domain="beta.example",
        primary_contact_id=ids["bob"],
        amount="500.25",
        currency="USD",
        opened_at=iso(day(P2, 5)),
    )
    opportunity(
        client,
        sales,
        account_domain="gamma.example",
        amount="300.00",
        currency="EUR",
        opened_at=iso(day(P2, 8)),
    )
    opportunity(
        client,
        sales,
        account_domain="delta.example",
        amount="99.00",
        currency="USD",
        opened_at=iso(day(P1, -3)),
    )
    webinar = {
        "email": "bob@beta.example",
        "channel": "webinar",
        "kind": "webinar_attendance",
        "occurred_at": iso(day(P2, 20)),
    }
    created(client.post(f"{SALES}/touchpoints", json=webinar, headers=sales))

    stages = {
        who: client.get(f"{CONTACTS}/{cid}", headers=sales).json()["stage"]
        for who, cid in ids.items()
    }
    assert stages == {
        "ada": "customer",
        "bob": "opportunity",
        "cy": "sql",
        "dee": "mql",
        "eve": "sql",
    }
    return {"ids": ids, "campaign_id": campaign["id"]}


def report(client: TestClient, sales: dict[str, str], **params: Any) -> dict[str, Any]:
    query = {"start": iso(P1), "end": iso(END)} | params
    return created(client.get(PERFORMANCE, params=query, headers=sales), 200)


def decimals(row: dict[str, Any], *names: str) -> tuple[Decimal | None, ...]:
    return tuple(None if row[n] is None else Decimal(row[n]) for n in names)


def test_the_whole_report(client: TestClient, sales: dict[str, str], world: Any) -> None:
    perf = report(client, sales)
    assert perf["query"]["granularity"] == "month"
    assert perf["query"]["campaign_id"] is None

    # Pipeline: deals 1-3 opened in the period (deal 4 before it). Every touch matches
    # without a filter; each account was touched before its deal's cutoff: all influenced.
    # Sourced: each primary contact (for deal 3 the account's only contact, Cy) was a lead
    # and first touched before the deal opened.
    eur, usd = perf["pipeline"]  # sorted by currency
    assert (eur["currency"], eur["opportunities"], usd["currency"], usd["opportunities"]) == (
        "EUR",
        1,
        "USD",
        2,
    )
    money = ("amount", "won_amount", "influenced_amount", "sourced_amount")
    assert decimals(usd, *money) == (
        Decimal("1500.25"),  # 1000.00 + 500.25
        Decimal("1000.00"),  # deal 1 won
        Decimal("1500.25"),
        Decimal("1500.25"),
    )
    assert (usd["won_count"], usd["influenced_count"], usd["sourced_count"]) == (1, 2, 2)
    assert (usd["influenced_share"], usd["sourced_share"]) == ("1.0000", "1.0000")
    assert decimals(eur, *money) == (Decimal(300), Decimal(0), Decimal(300), Decimal(300))
    assert (eur["won_count"], eur["influenced_count"], eur["sourced_count"]) == (0, 1, 1)

    # Velocity: MQL entries Ada (P1), Bob and Cy (P2, scoring), Dee and Eve (now, API).
    velocity = perf["lead_velocity"]
    assert velocity["total_mqls"] == 5
    assert [(b["period_start"], b["mqls"], b["growth_pct"]) for b in velocity["buckets"]] == [
        (P1.date().isoformat(), 1, None),
        (P2.date().isoformat(), 2, "100.0"),  # (2 - 1) / 1
        (M0.date().isoformat(), 2, "0.0"),
    ]

    # Conversion, entries in the period:
    # lead→mql: Ada, Bob, Cy (MQL at capture, 0 days), Dee (MQL now): 4/4, median of
    #   [0, 0, 0, ~2 months] = 0.
    # mql→sql: Ada (opportunity 10 days later), Bob (opportunity 2 days later), Cy (SQL now,
    #   >= 22 days), Eve (SQL moments after her MQL); Dee not: 4/5 = 0.8, median of
    #   [~0, 2, 10, >= 22] = (2 + 10) / 2 = 6.
    # sql→opportunity: Cy and Eve entered SQL now, neither went further: 0/2.
    # opportunity→customer: Ada (won 10 days after opening) and Bob: 1/2.
    assert [
        (c["from_stage"], c["to_stage"], c["entered"], c["converted"], c["rate"],
         c["median_days_in_stage"])
        for c in perf["conversion"]
    ] == [
        ("lead", "mql", 4, 4, "1.0000", "0.00"),
        ("mql", "sql", 5, 4, "0.8000", "6.00"),
        ("sql", "opportunity", 2, 0, "0.0000", None),
        ("opportunity", "customer", 2, 1, "0.5000", "10.00"),
    ]  # fmt: skip

    # Lead quality: leads created in the period (not Eve), by source, most leads first.
    # webinar: Ada and Bob, both MQL, both beyond SQL afterwards; quality (100 + 95) / 2.
    assert [
        (q["source"], q["leads"], q["mqls"], q["sqls"], q["mql_to_sql_rate"],
         q["avg_quality_score"])
        for q in perf["lead_quality"]
    ] == [
        ("webinar", 2, 2, 2, "1.0000", "97.5"),
        ("referral", 1, 1, 1, "1.0000", "90.0"),
        ("unknown", 1, 1, 0, "0.0000", "90.0"),
    ]  # fmt: skip


def test_the_report_for_one_channel(client: TestClient, sales: dict[str, str], world: Any) -> None:
    perf = report(client, sales, channel="webinar")
    assert perf["query"]["channel"] == "webinar"

    # Webinar touches: Ada's registration (P1+3d, her first touch) and capture (P1+5d, the
    # campaign's channel), Bob's attendance (P2+20d, after deal 2 opened; his first touch
    # was an e-mail click). Deal 1: influenced and sourced. Deal 2: influenced (still open),
    # not sourced. Deal 3: Cy has no webinar touch.
    eur, usd = perf["pipeline"]  # sorted by currency
    assert (usd["influenced_count"], usd["sourced_count"]) == (2, 1)
    assert decimals(usd, "influenced_amount", "sourced_amount") == (
        Decimal("1500.25"),
        Decimal("1000.00"),
    )
    assert usd["influenced_share"] == "1.0000"
    assert usd["sourced_share"] == "0.6666"  # 1000.00 / 1500.25 = 0.66655…
    assert (eur["opportunities"], eur["influenced_count"], eur["sourced_count"]) == (1, 0, 0)
    assert (eur["influenced_share"], eur["sourced_share"]) == ("0.0000", "0.0000")

    # The population is Ada and Bob: MQLs at P1+5d and P2+3d.
    buckets = perf["lead_velocity"]["buckets"]
    assert [(b["mqls"], b["growth_pct"]) for b in buckets] == [
        (1, None),
        (1, "0.0"),
        (0, "-100.0"),
    ]
    assert [
        (c["entered"], c["converted"], c["median_days_in_stage"]) for c in perf["conversion"]
    ] == [
        (2, 2, "0.00"),
        (2, 2, "6.00"),  # Ada 10 days, Bob 2
        (0, 0, None),
        (2, 1, "10.00"),
    ]
    assert [(q["source"], q["leads"], q["avg_quality_score"]) for q in perf["lead_quality"]] == [
        ("webinar", 2, "97.5")
    ]


def test_the_report_for_one_campaign(client: TestClient, sales: dict[str, str], world: Any) -> None:
    perf = report(client, sales, campaign_id=world["campaign_id"])
    assert perf["query"]["campaign_id"] == world["campaign_id"]
    # Only Ada's touches carry the campaign: deal 1 of 1,500.25 USD.
    eur, usd = perf["pipeline"]  # sorted by currency
    assert (usd["influenced_count"], usd["sourced_count"]) == (1, 1)
    assert (usd["influenced_share"], usd["sourced_share"]) == ("0.6666", "0.6666")
    assert eur["influenced_count"] == 0
    assert perf["lead_velocity"]["total_mqls"] == 1
    assert [q["source"] for q in perf["lead_quality"]] == ["webinar"]
    # Campaign and channel together: a touch must match both; none is an e-mail one.
    both = report(client, sales, campaign_id=world["campaign_id"], channel="email")
    assert both["lead_velocity"]["total_mqls"] == 0
    assert [p["influenced_count"] for p in both["pipeline"]] == [0, 0]


def test_the_report_as_csv(client: TestClient, sales: dict[str, str], world: Any) -> None:
    answer = client.get(
        PERFORMANCE,
        params={"start": iso(P1), "end": iso(END)},
        headers=sales | {"Accept": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert answer.text.splitlines()[0].split(",")[0] == "section"
    sections = [r["section"] for r in rows]
    assert sections == [
        "query",
        "pipeline",
        "pipeline",
        "lead_velocity",
        "lead_velocity",
        "lead_velocity",
        "lead_velocity_total",
        "conversion",
        "conversion",
        "conversion",
        "conversion",
        "lead_quality",
        "lead_quality",
        "lead_quality",
    ]
    usd = next(r for r in rows if r["section"] == "pipeline" and r["currency"] == "USD")
    assert Decimal(usd["amount"]) == Decimal("1500.25")
    assert usd["sourced_share"] == "1.0000"
    assert usd["period_start"] == ""  # not a column of this section
    total = next(r for r in rows if r["section"] == "lead_velocity_total")
    assert total["mqls"] == "5"
    query = rows[0]
    assert datetime.fromisoformat(query["start"]) == P1
    assert query["granularity"] == "month"


def test_weekly_buckets_start_on_monday(client: TestClient, sales: dict[str, str]) -> None:
    # Wednesday 4 March 2026 to Wednesday 18 March: the weeks of 2, 9 and 16 March.
    perf = report(
        client,
        sales,
        start="2026-03-04T00:00:00Z",
        end="2026-03-18T00:00:00Z",
        granularity="week",
    )
    buckets = perf["lead_velocity"]["buckets"]
    assert [b["period_start"] for b in buckets] == ["2026-03-02", "2026-03-09", "2026-03-16"]
    assert all(b["mqls"] == 0 and b["growth_pct"] is None for b in buckets)
    assert perf["pipeline"] == []
    assert [c["rate"] for c in perf["conversion"]] == [None] * 4


def test_offsets_are_normalised_to_utc(client: TestClient, sales: dict[str, str]) -> None:
    perf = report(client, sales, start="2026-03-01T02:00:00+02:00", end="2026-04-01T00:00:00Z")
    start = datetime.fromisoformat(perf["query"]["start"])
    assert start == datetime(2026, 3, 1, tzinfo=UTC)
    assert start.utcoffset() == timedelta(0)


def test_the_default_period_is_the_last_365_days(client: TestClient, sales: dict[str, str]) -> None:
    perf = created(client.get(PERFORMANCE, headers=sales), 200)
    start = datetime.fromisoformat(perf["query"]["start"])
    end = datetime.fromisoformat(perf["query"]["end"])
    assert end - start == timedelta(days=365)
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-05-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}, "query.end"),
        ({"start": "2026-04-01T00:00:00"}, "query.start"),  # naive
        ({"end": "2026-04-01T00:00:00"}, "query.end"),
        ({"granularity": "day"}, "query.granularity"),
        ({"start": "0.5"}, "query.start"),
        ({"end": "1700000000"}, "query.end"),
        ({"start": "1900-01-01T00:00:00Z"}, "query.start"),
        ({"start": "2001-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "query.start"),
        ({"channel": "fax"}, "query.channel"),
        ({"campaign_id": "spring"}, "query.campaign_id"),
    ],
)
def test_bad_parameters_are_refused(
    client: TestClient, sales: dict[str, str], params: dict[str, str], field: str
) -> None:
    answer = client.get(PERFORMANCE, params=params, headers=sales)
    assert problem(answer) == [field]


def test_the_report_needs_the_sales_read_scope(client: TestClient, auth_headers: Headers) -> None:
    answer = client.get(PERFORMANCE, headers=auth_headers("product"))
    problem(answer, 403)
