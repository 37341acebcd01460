"""Sales performance: pipeline influenced and sourced per currency, lead velocity, stage
conversion and lead quality, checked against numbers worked out by hand on a small world.

The world (period Q1 2025 = [2025-01-01, 2025-04-01) unless a test says otherwise):

    campaigns: C1 "webinar-q1", C2 "ads-q1"; touchpoint channels "email" and "paid"

    contact  acct created     source  score lead row    touchpoint     stage changes
    alice    A1   2024-12-01  webinar 81    01-05       C1/email 01-03 lead 01-05, mql 01-12,
                                                                       sql 01-20, opportunity 02-01,
                                                                       customer 03-01
    bob      A1   2024-12-15  webinar 60    01-15       C2/paid 01-14  lead 01-15, sql 02-10
                                                                       (skips mql)
    carol    A2   2025-01-01  ads     -     01-20       C2/paid 01-18  lead 01-20, mql 01-24,
                                                C1/email 02-05 disqualified 02-20
    dave     A2   2025-01-02  -       70    03-05       C1/paid 03-01  lead 03-05, mql 03-10 12:00,
                                                                       sql 04-15 (after the period)
    erin     A3   2024-11-01  ads     90    2024-11-01  C1/email 02-15 lead 2024-11-01,
                                                                       mql 2024-12-15, sql 01-08
    mallory  A3   2024-10-01  ads     50    01-20       C2/paid 01-10  mql 01-21
             (merged into alice: ignored everywhere)

    deal  acct  primary  amount        state                          opened   closed
    O1    A1    alice    1000.00 USD   won                            02-01    03-01
    O2    A2    -        500.00 EUR    open                           02-10    -
    O3    A3    erin     2000.00 USD   open                           02-01    -
    O4    A1    bob      300.00 USD    lost (opened after the period) 04-10    04-20
    O5    A2    dave     250.00 EUR    lost                           01-05    01-15

All dates are 2025 unless written with a year, midnight UTC unless a time is given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from revhub.contacts.models import Account, Contact, StageChange
from revhub.contacts.stages import Stage
from revhub.core.errors import InvalidInput
from revhub.sales.models import Campaign, Lead, Opportunity, Touchpoint
from revhub.sales.performance import (
    CSV_COLUMNS,
    PerformanceQuery,
    PipelineByCurrency,
    SourceQuality,
    StageConversion,
    VelocityBucket,
    csv_rows,
    lead_quality,
    lead_velocity,
    performance,
    pipeline,
    stage_conversion,
)


def at(month: int, day: int, hour: int = 0, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


Q1 = (at(1, 1), at(4, 1))

# --- factories ------------------------------------------------------------------------------


def add_account(session: Session, domain: str) -> Account:
    account = Account(domain=domain, name=domain.split(".")[0].title())
    session.add(account)
    session.flush()
    return account


def add_campaign(session: Session, key: str, channel: str) -> Campaign:
    campaign = Campaign(key=key, name=key, channel=channel)
    session.add(campaign)
    session.flush()
    return campaign


def add_contact(
    session: Session,
    account: Account,
    *,
    created: datetime,
    source: str | None,
    score: int | None,
    stages: list[tuple[Stage, datetime]],
    lead_at: datetime | None = None,
) -> Contact:
    contact = Contact(
        account_id=account.id,
        lead_source=source,
        quality_score=score,
        stage=stages[-1][0].value,
        stage_changed_at=stages[-1][1],
        created_at=created,
        updated_at=created,
    )
    session.add(contact)
    session.flush()
    previous: Stage | None = None
    for stage, changed_at in stages:
        session.add(
            StageChange(
                contact_id=contact.id,
                from_stage=previous.value if previous else None,
                to_stage=stage.value,
                changed_at=changed_at,
                reason="test",
                source="test",
            )
        )
        previous = stage
    if lead_at is not None:
        session.add(Lead(contact_id=contact.id, created_at=lead_at, updated_at=lead_at))
    session.flush()
    return contact


def add_touch(
    session: Session, contact: Contact, campaign: Campaign, channel: str, when: datetime
) -> None:
    session.add(
        Touchpoint(
            contact_id=contact.id,
            campaign_id=campaign.id,
            channel=channel,
            kind="visit",
            occurred_at=when,
        )
    )
    session.flush()


def add_deal(
    session: Session,
    account: Account,
    primary: Contact | None,
    amount: str,
    currency: str,
    *,
    opened: datetime,
    closed: datetime | None = None,
    won: bool = False,
) -> None:
    session.add(
        Opportunity(
            account_id=account.id,
            primary_contact_id=primary.id if primary else None,
            name=f"{account.domain} {amount}",
            amount=Decimal(amount),
            currency=currency,
            stage="closed_won" if won else ("closed_lost" if closed else "negotiation"),
            is_closed=closed is not None,
            is_closed_won=won,
            opened_at=opened,
            closed_at=closed,
        )
    )
    session.flush()


@dataclass(frozen=True)
class World:
    c1: uuid.UUID
    c2: uuid.UUID


@pytest.fixture
def world(session: Session) -> World:
    a1, a2, a3 = (add_account(session, d) for d in ("acme.test", "globex.test", "initech.test"))
    c1 = add_campaign(session, "webinar-q1", "webinar")
    c2 = add_campaign(session, "ads-q1", "paid")
    s = Stage
    alice = add_contact(
        session, a1, created=at(12, 1, year=2024), source="webinar", score=81, lead_at=at(1, 5),
        stages=[(s.LEAD, at(1, 5)), (s.MQL, at(1, 12)), (s.SQL, at(1, 20)),
                (s.OPPORTUNITY, at(2, 1)), (s.CUSTOMER, at(3, 1))],
    )  # fmt: skip
    bob = add_contact(
        session, a1, created=at(12, 15, year=2024), source="webinar", score=60,
        lead_at=at(1, 15), stages=[(s.LEAD, at(1, 15)), (s.SQL, at(2, 10))],
    )  # fmt: skip
    carol = add_contact(
        session, a2, created=at(1, 1), source="ads", score=None, lead_at=at(1, 20),
        stages=[(s.LEAD, at(1, 20)), (s.MQL, at(1, 24)), (s.DISQUALIFIED, at(2, 20))],
    )  # fmt: skip
    dave = add_contact(
        session, a2, created=at(1, 2), source=None, score=70, lead_at=at(3, 5),
        stages=[(s.LEAD, at(3, 5)), (s.MQL, at(3, 10, 12)), (s.SQL, at(4, 15))],
    )  # fmt: skip
    erin = add_contact(
        session, a3, created=at(11, 1, year=2024), source="ads", score=90,
        lead_at=at(11, 1, year=2024),
        stages=[(s.LEAD, at(11, 1, year=2024)), (s.MQL, at(12, 15, year=2024)),
                (s.SQL, at(1, 8))],
    )  # fmt: skip
    mallory = add_contact(
        session, a3, created=at(10, 1, year=2024), source="ads", score=50, lead_at=at(1, 20),
        stages=[(s.MQL, at(1, 21))],
    )  # fmt: skip
    mallory.merged_into_id = alice.id
    add_touch(session, alice, c1, "email", at(1, 3))
    add_touch(session, bob, c2, "paid", at(1, 14))
    add_touch(session, carol, c2, "paid", at(1, 18))
    add_touch(session, carol, c1, "email", at(2, 5))
    add_touch(session, dave, c1, "paid", at(3, 1))
    add_touch(session, erin, c1, "email", at(2, 15))
    add_touch(session, mallory, c2, "paid", at(1, 10))
    add_deal(session, a1, alice, "1000.00", "USD", opened=at(2, 1), closed=at(3, 1), won=True)
    add_deal(session, a2, None, "500.00", "EUR", opened=at(2, 10))
    add_deal(session, a3, erin, "2000.00", "USD", opened=at(2, 1))
    add_deal(session, a1, bob, "300.00", "USD", opened=at(4, 10), closed=at(4, 20))
    add_deal(session, a2, dave, "250.00", "EUR", opened=at(1, 5), closed=at(1, 15))
    return World(c1=c1.id, c2=c2.id)


def q(**kwargs: object) -> PerformanceQuery:
    kwargs.setdefault("start", Q1[0])
    kwargs.setdefault("end", Q1[1])
    return PerformanceQuery(**kwargs)  # type: ignore[arg-type]


def d(value: str) -> Decimal:
    return Decimal(value)


def by_currency(rows: list[PipelineByCurrency]) -> dict[str, PipelineByCurrency]:
    return {row.currency: row for row in rows}


# --- pipeline -------------------------------------------------------------------------------


def test_pipeline_unfiltered_keeps_currencies_apart(session: Session, world: World) -> None:
    rows = pipeline(session, q())
    # O4 opened 04-10, outside Q1. USD = O1 + O3, EUR = O2 + O5: never one 3750 total.
    assert [row.currency for row in rows] == ["EUR", "USD"]
    eur, usd = rows
    # USD: 1000 + 2000 = 3000; won O1 = 1000.
    # O1 influenced: alice C1 01-03 <= closed 03-01. Sourced: alice's lead 01-05 <= opened
    #   02-01, her first touch (01-03) matches and is <= 02-01.
    # O3 influenced: erin's touch 02-15 <= end (open). Not sourced: her first touch 02-15
    #   came after opening 02-01.
    assert usd == PipelineByCurrency(
        currency="USD", opportunities=2, amount=d("3000.00"), won_count=1,
        won_amount=d("1000.00"), influenced_count=2, influenced_amount=d("3000.00"),
        sourced_count=1, sourced_amount=d("1000.00"),
        influenced_share=d("1.0000"),  # 3000/3000
        sourced_share=d("0.3333"),  # 1000/3000 = 0.33333…
    )  # fmt: skip
    # EUR: 500 + 250 = 750; nothing won.
    # O2 (no primary → A2's earliest-created contact carol, created 01-01 < dave 01-02):
    #   influenced by carol's touch 01-18 <= end; sourced: carol's lead 01-20 <= 02-10 and her
    #   first touch 01-18 <= 02-10.
    # O5 closed 01-15, before A2's first touch (carol 01-18): neither.
    assert eur == PipelineByCurrency(
        currency="EUR", opportunities=2, amount=d("750.00"), won_count=0, won_amount=d("0"),
        influenced_count=1, influenced_amount=d("500.00"), sourced_count=1,
        sourced_amount=d("500.00"),
        influenced_share=d("0.6667"), sourced_share=d("0.6667"),  # 500/750 = 0.66666…
    )  # fmt: skip


def test_pipeline_filtered_by_campaign(session: Session, world: World) -> None:
    eur, usd = pipeline(session, q(campaign_id=world.c1))
    # C1 touches: alice 01-03, carol 02-05, dave 03-01, erin 02-15.
    # O1: alice's C1 touch, also her first → influenced and sourced (1000).
    # O3: erin's C1 touch 02-15 <= end → influenced (2000), not sourced (after opening).
    assert (usd.influenced_count, usd.influenced_amount) == (2, d("3000.00"))
    assert (usd.sourced_count, usd.sourced_amount) == (1, d("1000.00"))
    # O2: carol's C1 touch 02-05 (and dave's 03-01) <= end → influenced. Carol, the source,
    #   touched C1 before opening (02-05 <= 02-10), but her first touch was C2 (01-18) → not
    #   sourced. O5: A2's first C1 touch 02-05 > closed 01-15 → no.
    assert (eur.influenced_count, eur.influenced_amount, eur.influenced_share) == (
        1,
        d("500.00"),
        d("0.6667"),  # 500/750
    )
    assert (eur.sourced_count, eur.sourced_amount, eur.sourced_share) == (0, d("0"), d("0.0000"))
    # The filter narrows attribution, never the deals themselves.
    assert (usd.opportunities, usd.amount, eur.opportunities, eur.amount) == (
        2,
        d("3000.00"),
        2,
        d("750.00"),
    )


def test_pipeline_filtered_by_channel_ignores_merged_contacts(
    session: Session, world: World
) -> None:
    eur, usd = pipeline(session, q(channel="paid"))
    # paid touches: bob 01-14 (A1), carol 01-18 (A2), dave 03-01 (A2); mallory's 01-10 on A3
    # does not count (merged away).
    # O1: bob 01-14 <= 03-01 → influenced; alice's first touch is email → not sourced.
    # O3: A3 has no live paid touch → neither.
    assert (usd.influenced_count, usd.influenced_amount, usd.influenced_share) == (
        1,
        d("1000.00"),
        d("0.3333"),  # 1000/3000
    )
    assert (usd.sourced_count, usd.sourced_share) == (0, d("0.0000"))
    # O2: carol's paid touch → influenced; her first touch (paid 01-18) <= 02-10 and lead 01-20
    # <= 02-10 → sourced. O5: no.
    assert (eur.influenced_count, eur.sourced_count, eur.sourced_amount) == (1, 1, d("500.00"))


def test_pipeline_with_both_filters_needs_both_on_one_touchpoint(
    session: Session, world: World
) -> None:
    # C2 touches are all "paid": none is C2 and "email".
    rows = pipeline(session, q(campaign_id=world.c2, channel="email"))
    assert [(r.influenced_count, r.sourced_count) for r in rows] == [(0, 0), (0, 0)]
    # C1 and "paid": only dave 03-01 (A2) → O2 influenced (open); carol is O2's source → no.
    eur, usd = pipeline(session, q(campaign_id=world.c1, channel="paid"))
    assert (eur.influenced_count, eur.sourced_count, usd.influenced_count) == (1, 0, 0)


def test_sourced_needs_the_lead_first_and_skips_merged_primaries(session: Session) -> None:
    account = add_account(session, "hooli.test")
    campaign = add_campaign(session, "launch", "email")
    early = add_contact(
        session, account, created=at(1, 1), source=None, score=None, lead_at=at(1, 2),
        stages=[(Stage.LEAD, at(1, 2))],
    )  # fmt: skip
    late_lead = add_contact(
        session, account, created=at(1, 3), source=None, score=None, lead_at=at(2, 20),
        stages=[(Stage.LEAD, at(2, 20))],
    )  # fmt: skip
    merged = add_contact(
        session, account, created=at(1, 4), source=None, score=None,
        stages=[(Stage.LEAD, at(1, 4))],
    )  # fmt: skip
    merged.merged_into_id = early.id
    for person in (early, late_lead):
        add_touch(session, person, campaign, "email", at(1, 2))
    add_touch(session, merged, campaign, "email", at(1, 1))
    # D1: primary late_lead touched 01-02 (first, matching) but its Lead row came 02-20,
    #   after opening 02-10 → influenced, not sourced.
    add_deal(session, account, late_lead, "100.00", "GBP", opened=at(2, 10))
    # D2: primary is merged away → ignored, so the account's earliest-created live contact
    #   (early: lead 01-02, first touch 01-02, both <= 02-10) stands in → sourced.
    add_deal(session, account, merged, "40.00", "GBP", opened=at(2, 10))
    (gbp,) = pipeline(session, q())
    assert (gbp.influenced_count, gbp.sourced_count, gbp.sourced_amount) == (2, 1, d("40.00"))
    assert gbp.sourced_share == d("0.2857")  # 40/140 = 0.285714…


def test_sourced_is_always_within_influenced(session: Session, world: World) -> None:
    for query in (q(), q(campaign_id=world.c1), q(channel="paid"), q(campaign_id=world.c2)):
        for row in pipeline(session, query):
            assert row.sourced_count <= row.influenced_count
            assert row.sourced_amount <= row.influenced_amount


# --- lead velocity --------------------------------------------------------------------------


def test_monthly_velocity_lists_zero_months(session: Session, world: World) -> None:
    velocity = lead_velocity(session, q())
    # MQL entries in Q1 of live contacts: alice 01-12, carol 01-24 (Jan), dave 03-10 (Mar).
    # erin's was in 2024; mallory's 01-21 is ignored (merged).
    assert velocity.granularity == "month"
    assert velocity.total_mqls == 3
    assert velocity.buckets == [
        VelocityBucket(at(1, 1).date(), 2, None),  # first bucket
        VelocityBucket(at(2, 1).date(), 0, d("-100.0")),  # (0 - 2) / 2 * 100
        VelocityBucket(at(3, 1).date(), 1, None),  # previous is 0
    ]


def test_weekly_velocity_starts_on_monday(session: Session, world: World) -> None:
    # [Wed 01-08, Mon 01-27): ISO weeks starting Mon 01-06, 01-13, 01-20 overlap it.
    velocity = lead_velocity(session, q(start=at(1, 8), end=at(1, 27), granularity="week"))
    # alice 01-12 (Sun) → week 01-06; none in week 01-13; carol 01-24 (Fri) → week 01-20.
    assert [(b.period_start.isoformat(), b.mqls, b.growth_pct) for b in velocity.buckets] == [
        ("2025-01-06", 1, None),
        ("2025-01-13", 0, d("-100.0")),  # (0 - 1) / 1 * 100
        ("2025-01-20", 1, None),  # after a zero week
    ]
    assert velocity.total_mqls == 2


def test_velocity_growth_rounds_to_one_decimal(session: Session) -> None:
    account = add_account(session, "growth.test")
    # Jan: 3 MQLs, Feb: 4 → (4 - 3) / 3 * 100 = 33.333… → 33.3; Mar: 5 → 25.0.
    for month, count in ((1, 3), (2, 4), (3, 5)):
        for i in range(count):
            add_contact(
                session, account, created=at(1, 1), source=None, score=None,
                stages=[(Stage.MQL, at(month, 2 + i))],
            )  # fmt: skip
    growth = [b.growth_pct for b in lead_velocity(session, q()).buckets]
    assert growth == [None, d("33.3"), d("25.0")]


def test_velocity_filtered_population(session: Session, world: World) -> None:
    # paid population: bob, carol, dave (mallory merged). MQLs: carol 01-24, dave 03-10.
    velocity = lead_velocity(session, q(channel="paid"))
    assert [b.mqls for b in velocity.buckets] == [1, 0, 1]
    # C1 population before 02-01: only alice (carol's C1 touch is 02-05, erin's 02-15, dave's
    # 03-01), so carol's MQL of 01-24 does not count.
    january = lead_velocity(session, q(end=at(2, 1), campaign_id=world.c1))
    assert [b.mqls for b in january.buckets] == [1]  # alice 01-12


# --- stage conversion -----------------------------------------------------------------------


def test_stage_conversion_counts_skips_not_exits(session: Session, world: World) -> None:
    steps = stage_conversion(session, q())
    assert steps == [
        # lead in Q1: alice 01-05, bob 01-15, carol 01-20, dave 03-05 → 4.
        # converted: alice mql 01-12 (7 d), bob sql 02-10 (skip counts, 26 d), carol mql 01-24
        # (4 d), dave mql 03-10 12:00 (5.5 d) → 4, rate 1. Median of 4, 5.5, 7, 26 = 6.25.
        StageConversion(Stage.LEAD, Stage.MQL, 4, 4, d("1.0000"), d("6.25")),
        # mql in Q1: alice 01-12, carol 01-24, dave 03-10 12:00 → 3 (erin's was in 2024).
        # converted: alice sql 01-20 (8 d); dave sql 04-15, after the period but counted
        # (35.5 d); carol was disqualified (an exit) → 2/3 = 0.6667, median (8 + 35.5) / 2.
        StageConversion(Stage.MQL, Stage.SQL, 3, 2, d("0.6667"), d("21.75")),
        # sql in Q1: erin 01-08, alice 01-20, bob 02-10 → 3; only alice → opportunity 02-01
        # (12 d): 1/3 = 0.3333.
        StageConversion(Stage.SQL, Stage.OPPORTUNITY, 3, 1, d("0.3333"), d("12.00")),
        # opportunity: alice 02-01 → customer 03-01 (28 d).
        StageConversion(Stage.OPPORTUNITY, Stage.CUSTOMER, 1, 1, d("1.0000"), d("28.00")),
    ]


def test_stage_conversion_population_needs_a_touch_before_end(
    session: Session, world: World
) -> None:
    # C1 up to 02-01: alice (touch 01-03) is in; erin's C1 touch 02-15 is not before the end,
    # so her sql 01-08 does not enter sql→opportunity.
    steps = stage_conversion(session, q(end=at(2, 1), campaign_id=world.c1))
    # alice entered lead, mql and sql in January (opportunity on 02-01 is outside the period).
    assert [(s.entered, s.converted) for s in steps] == [(1, 1), (1, 1), (1, 1), (0, 0)]
    assert (steps[3].rate, steps[3].median_days_in_stage) == (None, None)


# --- lead quality ---------------------------------------------------------------------------


def test_lead_quality_by_source(session: Session, world: World) -> None:
    # Lead rows created in Q1: alice, bob (webinar), carol (ads), dave (none → "unknown").
    # erin's lead is from 2024; mallory is merged.
    assert lead_quality(session, q()) == [
        # alice reached mql then sql; bob skipped mql (no mql → not counted).
        # scores (81 + 60) / 2 = 70.5.
        SourceQuality("webinar", 2, 1, 1, d("1.0000"), d("70.5")),
        # carol: mql then disqualified → 0/1; no score. Ties on 1 lead sort by source.
        SourceQuality("ads", 1, 1, 0, d("0.0000"), None),
        # dave: mql 03-10, sql 04-15 (any time after the mql entry counts); score 70.
        SourceQuality("unknown", 1, 1, 1, d("1.0000"), d("70.0")),
    ]


def test_lead_quality_filtered(session: Session, world: World) -> None:
    # C2 population: bob (01-14), carol (01-18); mallory is merged.
    assert lead_quality(session, q(campaign_id=world.c2)) == [
        SourceQuality("ads", 1, 1, 0, d("0.0000"), None),  # carol
        SourceQuality("webinar", 1, 0, 0, None, d("60.0")),  # bob: no mql → rate None
    ]


def test_lead_quality_counts_sql_only_after_the_mql_and_rounds_half_up(session: Session) -> None:
    account = add_account(session, "recycled.test")
    s = Stage
    # An SQL that was disqualified, recycled and then became an MQL: its SQL came before the
    # MQL entry, so it is 1 MQL, 0 SQLs.
    add_contact(
        session, account, created=at(1, 1), source="event", score=70, lead_at=at(1, 1),
        stages=[(s.SQL, at(1, 2)), (s.DISQUALIFIED, at(1, 5)), (s.LEAD, at(1, 10)),
                (s.MQL, at(1, 20))],
    )  # fmt: skip
    for score in (71, 70, 70):  # leads that never reached mql
        add_contact(
            session, account, created=at(1, 1), source="event", score=score, lead_at=at(1, 3),
            stages=[(s.LEAD, at(1, 3))],
        )  # fmt: skip
    # avg (70 + 71 + 70 + 70) / 4 = 70.25 → 70.3 (half-up); 0 SQLs of 1 MQL.
    assert lead_quality(session, q()) == [SourceQuality("event", 4, 1, 0, d("0.0000"), d("70.3"))]


# --- the whole report -----------------------------------------------------------------------


def test_an_empty_period_reports_zeros(session: Session, world: World) -> None:
    report = performance(session, q(start=at(1, 1, year=2023), end=at(3, 1, year=2023)))
    assert report.pipeline == []
    assert report.lead_velocity.total_mqls == 0
    assert report.lead_velocity.buckets == [
        VelocityBucket(at(1, 1, year=2023).date(), 0, None),
        VelocityBucket(at(2, 1, year=2023).date(), 0, None),  # previous is 0
    ]
    assert all(
        (s.entered, s.converted, s.rate, s.median_days_in_stage) == (0, 0, None, None)
        for s in report.conversion
    )
    assert report.lead_quality == []
    # start == end: no bucket overlaps an empty interval.
    assert lead_velocity(session, q(start=at(2, 15), end=at(2, 15))).buckets == []


def test_performance_echoes_the_query_and_assembles_every_part(
    session: Session, world: World
) -> None:
    query = q(channel="paid")
    report = performance(session, query)
    assert report.query is query
    assert report.pipeline == pipeline(session, query)
    assert report.lead_velocity == lead_velocity(session, query)
    assert report.conversion == stage_conversion(session, query)
    assert report.lead_quality == lead_quality(session, query)


def test_csv_rows_have_a_section_and_every_column(session: Session, world: World) -> None:
    rows = csv_rows(performance(session, q()))
    assert all(tuple(row) == CSV_COLUMNS for row in rows)
    sections = [row["section"] for row in rows]
    # 1 query, 2 currencies, 3 months, 1 total, 4 steps, 3 sources.
    assert sections == (
        ["query"] + ["pipeline"] * 2 + ["lead_velocity"] * 3 + ["lead_velocity_total"]
        + ["conversion"] * 4 + ["lead_quality"] * 3
    )  # fmt: skip
    assert rows[0]["start"] == "2025-01-01T00:00:00+00:00"
    assert rows[0]["campaign_id"] == ""
    usd = rows[2]
    assert (usd["currency"], usd["amount"], usd["sourced_share"]) == ("USD", "3000.00", "0.3333")
    assert rows[4]["growth_pct"] == "-100.0"
    assert (rows[6]["section"], rows[6]["mqls"]) == ("lead_velocity_total", "3")
    assert (rows[7]["from_stage"], rows[7]["to_stage"], rows[7]["rate"]) == (
        "lead",
        "mql",
        "1.0000",
    )
    assert (rows[-1]["source"], rows[-1]["avg_quality_score"]) == ("unknown", "70.0")


# --- the query ------------------------------------------------------------------------------


def test_query_refuses_naive_or_reversed_periods() -> None:
    with pytest.raises(InvalidInput) as caught:
        PerformanceQuery(start=datetime(2025, 1, 1), end=at(2, 1))
    assert [e.field for e in caught.value.errors] == ["query.start"]
    with pytest.raises(InvalidInput):
        PerformanceQuery(start=at(2, 1), end=at(1, 1))
    with pytest.raises(InvalidInput):
        PerformanceQuery(start=at(1, 1), end=at(2, 1), granularity="day")  # type: ignore[arg-type]


def test_query_normalises_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    query = PerformanceQuery(start=datetime(2025, 1, 1, 2, tzinfo=plus_two), end=at(2, 1))
    assert query.start == at(1, 1)
    assert query.start.tzinfo is UTC
