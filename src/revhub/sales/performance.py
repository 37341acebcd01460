"""Sales performance: the pipeline marketing influenced and sourced, lead velocity, stage
conversion and lead quality by source, behind ``GET /api/v1/integrations/sales/performance``
(seed 000: "Sales pipeline influenced by marketing; campaign ROI and attribution metrics; lead
quality and conversion tracking"; shared metrics lead_velocity, conversion_rates,
revenue_attribution).

Rules every part follows:

- The period is [start, end): ``start`` inclusive, ``end`` exclusive, aware UTC datetimes.
- Merged-away contacts (``merged_into_id`` not null) are ignored everywhere.
- Filter (``campaign_id`` and/or ``channel``): a touchpoint "matches" when it has that campaign
  and/or that channel (both when both given). With a filter, the contact population for
  velocity, conversion and quality is the contacts having ≥ 1 matching touchpoint at any time
  before ``end``; pipeline uses matching touchpoints only. Without a filter every touchpoint
  matches and every contact counts.
- Money stays Decimal, grouped per currency: two currencies are never added.
- Ratios are Decimals rounded half-up: rates and shares to 4 places, ``growth_pct`` to 1,
  ``avg_quality_score`` to 1, days to 2; ``None`` where the denominator is 0 or nothing counts.

Each part is a handful of set-based SELECTs aggregated in Python: no query per contact or deal.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal, NamedTuple, get_args

from sqlalchemy import ColumnElement, Result, and_, case, func, or_, select, true
from sqlalchemy.orm import Session

from revhub.contacts.models import Contact, StageChange
from revhub.contacts.stages import FUNNEL, RANK, Stage
from revhub.core.errors import FieldError, InvalidInput
from revhub.sales.models import Lead, Opportunity, Touchpoint

Granularity = Literal["month", "week"]
CONVERSION_STEPS: Final = (
    (Stage.LEAD, Stage.MQL),
    (Stage.MQL, Stage.SQL),
    (Stage.SQL, Stage.OPPORTUNITY),
    (Stage.OPPORTUNITY, Stage.CUSTOMER),
)
CSV_COLUMNS: Final = (
    "section", "start", "end", "campaign_id", "channel", "granularity",
    "currency", "opportunities", "amount", "won_count", "won_amount",
    "influenced_count", "influenced_amount", "sourced_count", "sourced_amount",
    "influenced_share", "sourced_share",
    "period_start", "mqls", "growth_pct",
    "from_stage", "to_stage", "entered", "converted", "rate", "median_days_in_stage",
    "source", "leads", "sqls", "mql_to_sql_rate", "avg_quality_score",
)  # fmt: skip
"""Every row of :func:`csv_rows` has exactly these keys, in this order ("" when not applicable)."""

_FUNNEL_STAGES: Final = tuple(stage.value for stage in FUNNEL[1:])
_US_PER_DAY: Final = Decimal(86_400_000_000)


@dataclass(frozen=True)
class PerformanceQuery:
    """What to report on. Naive datetimes, ``end`` before ``start`` or an unknown granularity
    raise :class:`InvalidInput` (422); aware datetimes are normalised to UTC."""

    start: datetime
    end: datetime
    campaign_id: uuid.UUID | None = None
    channel: str | None = None
    granularity: Granularity = "month"

    def __post_init__(self) -> None:
        errors = [
            FieldError(f"query.{name}", "Give a timezone-aware (UTC) datetime.")
            for name in ("start", "end")
            if getattr(self, name).utcoffset() is None
        ]
        if not errors and self.end < self.start:
            errors.append(FieldError("query.end", "The end must not be before the start."))
        if self.granularity not in get_args(Granularity):
            errors.append(FieldError("query.granularity", "Use 'month' or 'week'."))
        if errors:
            raise InvalidInput(errors)
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))

    @property
    def filtered(self) -> bool:
        return self.campaign_id is not None or self.channel is not None


DEFAULT_PERIOD: Final = timedelta(days=365)
LONGEST_PERIOD: Final = timedelta(days=3660)
FIRST_YEAR, LAST_YEAR = 1971, 2200


def period_query(
    *,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    campaign_id: uuid.UUID | None = None,
    channel: str | None = None,
    granularity: Granularity = "month",
) -> PerformanceQuery:
    """The report's period: ``end`` defaults to now and ``start`` to a year before it; years
    outside 1971-2200 and periods over 10 years are refused (the buckets would run away)."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise InvalidInput(
                [FieldError(f"query.{name}", f"give a year {FIRST_YEAR}-{LAST_YEAR}")]
            )
    until = end or now
    since = start or until - DEFAULT_PERIOD
    if until - since > LONGEST_PERIOD:
        raise InvalidInput([FieldError("query.start", "the period may span at most 10 years")])
    return PerformanceQuery(
        start=since, end=until, campaign_id=campaign_id, channel=channel, granularity=granularity
    )


@dataclass(frozen=True)
class PipelineByCurrency:
    currency: str
    opportunities: int
    amount: Decimal
    won_count: int
    won_amount: Decimal
    influenced_count: int
    influenced_amount: Decimal
    sourced_count: int
    sourced_amount: Decimal
    influenced_share: Decimal | None
    sourced_share: Decimal | None


@dataclass(frozen=True)
class VelocityBucket:
    period_start: date
    mqls: int
    growth_pct: Decimal | None


@dataclass(frozen=True)
class LeadVelocity:
    granularity: Granularity
    total_mqls: int
    buckets: list[VelocityBucket]


@dataclass(frozen=True)
class StageConversion:
    from_stage: Stage
    to_stage: Stage
    entered: int
    converted: int
    rate: Decimal | None
    median_days_in_stage: Decimal | None


@dataclass(frozen=True)
class SourceQuality:
    source: str
    leads: int
    mqls: int
    sqls: int
    mql_to_sql_rate: Decimal | None
    avg_quality_score: Decimal | None


@dataclass(frozen=True)
class Performance:
    query: PerformanceQuery
    pipeline: list[PipelineByCurrency]
    lead_velocity: LeadVelocity
    conversion: list[StageConversion]
    lead_quality: list[SourceQuality]


def performance(session: Session, query: PerformanceQuery) -> Performance:
    """All four parts for one query (see each function for its rules)."""
    return Performance(
        query=query,
        pipeline=pipeline(session, query),
        lead_velocity=lead_velocity(session, query),
        conversion=stage_conversion(session, query),
        lead_quality=lead_quality(session, query),
    )


# --- pipeline -------------------------------------------------------------------------------


class _Person(NamedTuple):
    id: uuid.UUID
    account_id: uuid.UUID | None
    created_at: datetime
    lead_at: datetime | None
    first_touch: datetime | None
    first_match: datetime | None


class _Scored(NamedTuple):
    amount: Decimal
    won: bool
    influenced: bool
    sourced: bool


def pipeline(session: Session, query: PerformanceQuery) -> list[PipelineByCurrency]:
    """Opportunities with ``opened_at`` in [start, end), per currency (sorted by currency):
    ``opportunities`` count and ``amount`` total; ``won_count``/``won_amount`` (is_closed_won).

    Marketing-influenced: some contact of the opportunity's account (not merged) has a
    matching touchpoint with occurred_at ≤ the opportunity's closed_at, or ≤ ``end`` while it is
    open (``is_closed`` false or no ``closed_at``).

    Marketing-sourced: the opportunity's primary contact (when null: the account's
    earliest-created contact) has a Lead row created at or before opened_at, and that contact's
    earliest touchpoint (any touchpoint) is a matching one and happened at or before opened_at.
    A merged-away primary contact is ignored, so the account's earliest-created contact stands
    in; when several touchpoints share the earliest instant, one matching is enough.
    Sourced ⊆ influenced: a deal counts as sourced only when it also counts as influenced.

    ``influenced_share``/``sourced_share`` = amount / total amount, rounded to 4 places
    (None when the total is 0).
    """
    in_period = (Opportunity.opened_at >= query.start, Opportunity.opened_at < query.end)
    deals = session.execute(
        select(
            Opportunity.account_id,
            Opportunity.primary_contact_id,
            Opportunity.amount,
            Opportunity.currency,
            Opportunity.is_closed,
            Opportunity.is_closed_won,
            Opportunity.opened_at,
            Opportunity.closed_at,
        ).where(*in_period)
    ).all()
    people = _deal_people(session, query, in_period)
    first_match, earliest = _by_account(people.values())
    by_currency: defaultdict[str, list[_Scored]] = defaultdict(list)
    for deal in deals:
        cutoff = deal.closed_at if deal.is_closed and deal.closed_at is not None else query.end
        touched = first_match.get(deal.account_id)
        influenced = touched is not None and touched <= cutoff
        primary = people.get(deal.primary_contact_id) if deal.primary_contact_id else None
        source = primary or earliest.get(deal.account_id)
        sourced = influenced and source is not None and _sourced(source, deal.opened_at)
        by_currency[deal.currency].append(
            _Scored(deal.amount, deal.is_closed_won, influenced, sourced)
        )
    return [_summarise(currency, by_currency[currency]) for currency in sorted(by_currency)]


def _by_account(
    people: Iterable[_Person],
) -> tuple[dict[uuid.UUID, datetime], dict[uuid.UUID, _Person]]:
    """Per account: its first matching touchpoint, and its earliest-created contact."""
    first_match: dict[uuid.UUID, datetime] = {}
    earliest: dict[uuid.UUID, _Person] = {}
    for person in sorted(people, key=lambda p: (p.created_at, str(p.id))):
        if person.account_id is None:
            continue
        earliest.setdefault(person.account_id, person)
        if person.first_match is not None:
            known = first_match.setdefault(person.account_id, person.first_match)
            first_match[person.account_id] = min(known, person.first_match)
    return first_match, earliest


def _deal_people(
    session: Session, query: PerformanceQuery, in_period: tuple[ColumnElement[bool], ...]
) -> dict[uuid.UUID, _Person]:
    """Live contacts of the period's deals (their accounts' and their primary contacts), with
    their Lead date, first touchpoint and first matching touchpoint: one SELECT."""
    wanted = and_(
        Contact.merged_into_id.is_(None),
        or_(
            Contact.account_id.in_(select(Opportunity.account_id).where(*in_period)),
            Contact.id.in_(select(Opportunity.primary_contact_id).where(*in_period)),
        ),
    )
    touches = (
        select(
            Touchpoint.contact_id,
            func.min(Touchpoint.occurred_at).label("first_touch"),
            func.min(case((_matches(query), Touchpoint.occurred_at))).label("first_match"),
        )
        .where(Touchpoint.contact_id.in_(select(Contact.id).where(wanted)))
        .group_by(Touchpoint.contact_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Contact.id,
            Contact.account_id,
            Contact.created_at,
            Lead.created_at.label("lead_at"),
            touches.c.first_touch,
            touches.c.first_match,
        )
        .outerjoin(Lead, Lead.contact_id == Contact.id)
        .outerjoin(touches, touches.c.contact_id == Contact.id)
        .where(wanted)
    )
    return {row.id: _Person(*row) for row in rows}


def _sourced(person: _Person, opened_at: datetime) -> bool:
    return (
        person.lead_at is not None
        and person.lead_at <= opened_at
        and person.first_touch is not None
        and person.first_match == person.first_touch
        and person.first_touch <= opened_at
    )


def _summarise(currency: str, deals: Sequence[_Scored]) -> PipelineByCurrency:
    def total(keep: Sequence[_Scored]) -> Decimal:
        return sum((deal.amount for deal in keep), Decimal(0))

    won = [deal for deal in deals if deal.won]
    influenced = [deal for deal in deals if deal.influenced]
    sourced = [deal for deal in deals if deal.sourced]
    amount = total(deals)
    return PipelineByCurrency(
        currency=currency,
        opportunities=len(deals),
        amount=amount,
        won_count=len(won),
        won_amount=total(won),
        influenced_count=len(influenced),
        influenced_amount=total(influenced),
        sourced_count=len(sourced),
        sourced_amount=total(sourced),
        influenced_share=_ratio(total(influenced), amount, "0.0001"),
        sourced_share=_ratio(total(sourced), amount, "0.0001"),
    )


# --- lead velocity --------------------------------------------------------------------------


def lead_velocity(session: Session, query: PerformanceQuery) -> LeadVelocity:
    """MQL entries = StageChange rows with to_stage "mql" and changed_at in [start, end), of
    contacts in the population, counted per UTC calendar month (or ISO week starting Monday
    when granularity="week"). Buckets: every bucket overlapping [start, end) listed in order,
    including zero ones, each ``{period_start, mqls, growth_pct}`` where ``period_start`` is
    the bucket's first day (a date) and growth_pct = (this - previous) / previous * 100 as a
    Decimal rounded to 1 decimal, None for the first bucket or when previous is 0. Also
    ``total_mqls``.
    """
    entries = session.scalars(
        select(StageChange.changed_at)
        .join(Contact, Contact.id == StageChange.contact_id)
        .where(
            StageChange.to_stage == Stage.MQL.value,
            StageChange.changed_at >= query.start,
            StageChange.changed_at < query.end,
            _in_population(query),
        )
    )
    counts = Counter(_bucket(at, query.granularity) for at in entries)
    buckets: list[VelocityBucket] = []
    previous: int | None = None
    for period_start in _periods(query):
        mqls = counts[period_start]
        buckets.append(VelocityBucket(period_start, mqls, _growth(previous, mqls)))
        previous = mqls
    return LeadVelocity(query.granularity, sum(counts.values()), buckets)


def _bucket(at: datetime, granularity: Granularity) -> date:
    day = at.astimezone(UTC).date()
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_bucket(period: date, granularity: Granularity) -> date:
    if granularity == "week":
        return period + timedelta(days=7)
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


def _periods(query: PerformanceQuery) -> Iterator[date]:
    if query.start >= query.end:
        return
    period = _bucket(query.start, query.granularity)
    while datetime.combine(period, time(), UTC) < query.end:
        yield period
        period = _next_bucket(period, query.granularity)


def _growth(previous: int | None, current: int) -> Decimal | None:
    if not previous:
        return None
    return _round(Decimal(current - previous) * 100 / previous, "0.1")


# --- stage conversion -----------------------------------------------------------------------


def stage_conversion(session: Session, query: PerformanceQuery) -> list[StageConversion]:
    """For each step lead→mql, mql→sql, sql→opportunity, opportunity→customer (A→B):

    ``entered`` = population contacts with a StageChange into A with changed_at in
    [start, end) (first such entry per contact); ``converted`` = those with a later StageChange
    (changed_at ≥ that entry, even after ``end``) into any stage whose RANK ≥ RANK[B]
    (skipping counts; exits disqualified/churned do not); ``rate`` = converted/entered rounded
    to 4 decimals (None when entered = 0); ``median_days_in_stage`` = median over converted
    contacts of (first qualifying later change - entry into A) in days, rounded to 2 decimals
    (None when none converted).
    """
    rows = session.execute(
        select(StageChange.contact_id, StageChange.to_stage, StageChange.changed_at)
        .join(Contact, Contact.id == StageChange.contact_id)
        .where(
            StageChange.to_stage.in_(_FUNNEL_STAGES),
            StageChange.changed_at >= query.start,
            _in_population(query),
        )
    )
    histories = _histories(rows)
    return [_step(histories.values(), a, b, query) for a, b in CONVERSION_STEPS]


def _step(
    histories: Iterable[list[tuple[datetime, Stage]]],
    a: Stage,
    b: Stage,
    query: PerformanceQuery,
) -> StageConversion:
    entered = 0
    waits: list[timedelta] = []
    for history in histories:
        entry = next(
            (at for at, stage in history if stage == a and query.start <= at < query.end), None
        )
        if entry is None:
            continue
        entered += 1
        done = next((at for at, stage in history if at >= entry and RANK[stage] >= RANK[b]), None)
        if done is not None:
            waits.append(done - entry)
    return StageConversion(
        a, b, entered, len(waits), _ratio(len(waits), entered, "0.0001"), _median_days(waits)
    )


def _median_days(waits: list[timedelta]) -> Decimal | None:
    if not waits:
        return None
    micros = sorted(wait // timedelta(microseconds=1) for wait in waits)
    mid = len(micros) // 2
    middle = Decimal(micros[mid]) if len(micros) % 2 else Decimal(micros[mid - 1] + micros[mid]) / 2
    return _round(middle / _US_PER_DAY, "0.01")


# --- lead quality ---------------------------------------------------------------------------


def lead_quality(session: Session, query: PerformanceQuery) -> list[SourceQuality]:
    """Population contacts whose Lead row was created in [start, end), grouped by
    contact.lead_source (None → "unknown"), each ``{source, leads, mqls, sqls,
    mql_to_sql_rate, avg_quality_score}``: mqls = contacts with a StageChange to "mql" (at any
    time); sqls = among those mqls, the ones with a StageChange to "sql" or beyond (rank ≥ sql)
    at or after their first mql entry; mql_to_sql_rate = sqls/mqls ("MQL → SQL acceptance"),
    4 decimals, None when mqls = 0; avg_quality_score over non-null quality scores, 1 decimal,
    None if none. Sorted by leads desc then source.
    """
    leads = (
        select(Contact.id, Contact.lead_source, Contact.quality_score)
        .join(Lead, Lead.contact_id == Contact.id)
        .where(Lead.created_at >= query.start, Lead.created_at < query.end, _in_population(query))
    )
    people = session.execute(leads).all()
    changes = session.execute(
        select(StageChange.contact_id, StageChange.to_stage, StageChange.changed_at).where(
            StageChange.contact_id.in_(leads.with_only_columns(Contact.id)),
            StageChange.to_stage.in_(_FUNNEL_STAGES[1:]),
        )
    )
    histories = _histories(changes)
    groups: defaultdict[str, list[tuple[bool, bool, int | None]]] = defaultdict(list)
    for person in people:
        mql, sql = _reached(histories.get(person.id, []))
        groups[person.lead_source or "unknown"].append((mql, sql, person.quality_score))
    found = [_quality(source, members) for source, members in groups.items()]
    return sorted(found, key=lambda row: (-row.leads, row.source))


def _reached(history: list[tuple[datetime, Stage]]) -> tuple[bool, bool]:
    """(reached mql, then reached sql or beyond at or after the first mql entry)."""
    mql = next((at for at, stage in history if stage == Stage.MQL), None)
    if mql is None:
        return False, False
    return True, any(at >= mql and RANK[stage] >= RANK[Stage.SQL] for at, stage in history)


def _quality(source: str, members: list[tuple[bool, bool, int | None]]) -> SourceQuality:
    mqls = sum(mql for mql, _sql, _score in members)
    sqls = sum(sql for _mql, sql, _score in members)
    scores = [score for _mql, _sql, score in members if score is not None]
    average = _round(Decimal(sum(scores)) / len(scores), "0.1") if scores else None
    return SourceQuality(source, len(members), mqls, sqls, _ratio(sqls, mqls, "0.0001"), average)


# --- shared ---------------------------------------------------------------------------------


def _matches(query: PerformanceQuery) -> ColumnElement[bool]:
    """A touchpoint matches the filter (always true without one)."""
    conditions: list[ColumnElement[bool]] = []
    if query.campaign_id is not None:
        conditions.append(Touchpoint.campaign_id == query.campaign_id)
    if query.channel is not None:
        conditions.append(Touchpoint.channel == query.channel)
    return and_(true(), *conditions)


def _in_population(query: PerformanceQuery) -> ColumnElement[bool]:
    """``Contact`` is live and, with a filter, has a matching touchpoint before ``end``."""
    live = Contact.merged_into_id.is_(None)
    if not query.filtered:
        return live
    touched = select(Touchpoint.contact_id).where(
        _matches(query), Touchpoint.occurred_at < query.end
    )
    return and_(live, Contact.id.in_(touched))


def _histories(
    rows: Result[uuid.UUID, str, datetime],
) -> dict[uuid.UUID, list[tuple[datetime, Stage]]]:
    """Stage changes per contact, oldest first."""
    histories: defaultdict[uuid.UUID, list[tuple[datetime, Stage]]] = defaultdict(list)
    for contact_id, to_stage, changed_at in rows:
        histories[contact_id].append((changed_at, Stage(to_stage)))
    for history in histories.values():
        history.sort()
    return histories


def _round(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _ratio(part: Decimal | int, whole: Decimal | int, places: str) -> Decimal | None:
    return _round(Decimal(part) / Decimal(whole), places) if whole else None


# --- CSV ------------------------------------------------------------------------------------


def csv_rows(perf: Performance) -> list[dict[str, str]]:
    """Everything as flat rows for ``Accept: text/csv``, each keyed by :data:`CSV_COLUMNS`.

    ``section`` says what a row is: ``query`` (the echo), ``pipeline`` (one per currency),
    ``lead_velocity`` (one per bucket), ``lead_velocity_total`` (``mqls`` = total_mqls),
    ``conversion`` (one per step) and ``lead_quality`` (one per source). Decimals keep their
    places, datetimes and dates are ISO 8601, None is "".
    """
    query, velocity = perf.query, perf.lead_velocity
    rows = [_csv_row("query", _values(query))]
    rows += [_csv_row("pipeline", _values(row)) for row in perf.pipeline]
    rows += [
        _csv_row("lead_velocity", {"granularity": velocity.granularity, **_values(bucket)})
        for bucket in velocity.buckets
    ]
    total = {"granularity": velocity.granularity, "mqls": velocity.total_mqls}
    rows.append(_csv_row("lead_velocity_total", total))
    rows += [_csv_row("conversion", _values(row)) for row in perf.conversion]
    rows += [_csv_row("lead_quality", _values(row)) for row in perf.lead_quality]
    return rows


def _values(obj: Any) -> dict[str, object]:
    return {field.name: getattr(obj, field.name) for field in fields(obj)}


def _csv_row(section: str, values: Mapping[str, object]) -> dict[str, str]:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row["section"] = section
    for name, value in values.items():
        if name not in row:
            raise KeyError(f"{name} is not one of CSV_COLUMNS")
        row[name] = _text(value)
    return row


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return str(value)
