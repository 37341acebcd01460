"""From touchpoints and deals in the database to ``Journeys``.

A converting journey is one deal: closed-won deals closed in the period (``outcome="won"``)
or deals opened in the period and still open (``outcome="pipeline"``). Its touches are its
unit's touches from ``lookback_days`` before the deal was opened (no lower bound when the
look-back is off) up to the deal's close (won) or its opening (open pipeline). The unit is
the deal's primary contact (contact scope) or its account, every contact of which counts
(account scope, B2B). A deal with no touch in its window is left out of every model.

A non-converting journey is a unit with touches in the period and no such deal: its touches
in the period. Markov and Shapley learn from them; rule-based models give them no credit.

Touches are read with their times as epoch seconds computed by the database, and units as
text, so the per-touch work stays in numpy.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Float, String, cast, func, select
from sqlalchemy.orm import Session

from revhub.attribution.journeys import Floats, Ints, Journeys
from revhub.contacts.models import Contact
from revhub.sales.models import Campaign, Lead, Opportunity, Touchpoint
from revhub.sales.schemas import Channel, TouchpointKind

Outcome = Literal["won", "pipeline"]
Scope = Literal["contact", "account"]
GroupBy = Literal["campaign", "channel", "touchpoint_type"]
NO_CAMPAIGN = "(no campaign)"
DAY = 86_400.0


@dataclass(frozen=True)
class Period:
    """What to attribute: deals of ``outcome`` in [start, end), journeys by ``scope``,
    ``lookback_days`` before each deal opened (None: no limit), credit by ``group_by``."""

    start: datetime
    end: datetime
    outcome: Outcome = "won"
    scope: Scope = "contact"
    lookback_days: int | None = 90
    group_by: GroupBy = "campaign"
    currency: str | None = None


@dataclass(frozen=True, eq=False)
class Deals:
    """The converting journeys' deals, in journey order."""

    ids: list[uuid.UUID]
    amounts: list[Decimal]
    accounts: list[uuid.UUID]
    currency: str | None
    other_currencies: list[str]


@dataclass(frozen=True, eq=False)
class History:
    """Journeys plus what the API reports beside the credit: the deals behind the converting
    journeys, each journey's account (for attributed customers), the labels of the kinds."""

    journeys: Journeys
    deals: Deals
    account_of: Ints
    kinds: tuple[str, ...]
    group_by: GroupBy


def epoch_seconds(session: Session, column: Any) -> ColumnElement[float]:
    """``column`` (aware UTC) as seconds since 1970, computed by the database."""
    if session.get_bind().dialect.name == "sqlite":
        return cast((func.julianday(column) - 2440587.5) * DAY, Float)
    return cast(func.extract("epoch", column), Float)


def read_history(
    session: Session, period: Period, *, deal_ids: Sequence[uuid.UUID] = ()
) -> History:
    """Journeys of ``period`` (only the deals ``deal_ids``, in any currency, and no
    non-converting journeys, when given: the per-deal recomputation)."""
    found = _deals(session, period, deal_ids)
    touches = _touches(session, period, found[2], with_idle=not deal_ids)
    return _assemble(period, found, touches, with_idle=not deal_ids)


@dataclass(frozen=True, eq=False)
class _Deal:
    id: uuid.UUID
    account_id: uuid.UUID
    unit: Any
    amount: Decimal
    opened: float
    closed: float | None
    lead: float | None


@dataclass(frozen=True, eq=False)
class _Touches:
    """Touches as arrays: the unit (contact or account) key, group and kind codes with their
    labels, and epoch seconds."""

    unit: NDArray[Any]
    group: Ints
    groups: tuple[str, ...]
    kind: Ints
    kinds: tuple[str, ...]
    seconds: Floats


def _unit_key(session: Session, column: Any) -> ColumnElement[Any]:
    """A person's or account's key: on PostgreSQL the 64-bit hash of the UUID computed by
    the database (numbers travel and sort faster than text; two of a million keys collide
    with odds around 1 in 10^7), elsewhere the id as 32 hex digits."""
    if session.get_bind().dialect.name == "postgresql":
        return func.uuid_hash_extended(column, 0)
    return _text(column)


def _currency(session: Session, period: Period, query: Any) -> tuple[str | None, list[str]]:
    """The currency reported (asked for, or that of most deals: amounts in two currencies
    are never added) and the period's other currencies, which the report names."""
    counts = query.with_only_columns(Opportunity.currency, func.count()).group_by(
        Opportunity.currency
    )
    found = sorted(session.execute(counts).all(), key=lambda row: (-row[1], row[0]))
    currencies = [str(row[0]) for row in found]
    chosen = period.currency or (currencies[0] if currencies else None)
    return chosen, [c for c in currencies if c != chosen]


def _deals(
    session: Session, period: Period, deal_ids: Sequence[uuid.UUID]
) -> tuple[str | None, list[str], list[_Deal]]:
    unit = Opportunity.primary_contact_id if period.scope == "contact" else Opportunity.account_id
    query = select(
        Opportunity.id,
        Opportunity.account_id,
        _unit_key(session, unit),
        Opportunity.amount,
        epoch_seconds(session, Opportunity.opened_at),
        epoch_seconds(session, Opportunity.closed_at),
        epoch_seconds(session, Lead.created_at),
    ).outerjoin(Lead, Lead.contact_id == Opportunity.primary_contact_id)
    if period.outcome == "won":
        query = query.where(
            Opportunity.is_closed_won.is_(True),
            Opportunity.closed_at >= period.start,
            Opportunity.closed_at < period.end,
        )
    else:
        query = query.where(
            Opportunity.is_closed.is_(False),
            Opportunity.opened_at >= period.start,
            Opportunity.opened_at < period.end,
        )
    currency, others = None, list[str]()
    if deal_ids:
        query = query.where(Opportunity.id.in_(deal_ids))
    else:
        currency, others = _currency(session, period, query)
        query = query.where(Opportunity.currency == currency)
    query = query.where(unit.is_not(None)).order_by(Opportunity.id)
    rows = session.connection().execute(query)  # Core: no ORM bookkeeping per deal
    return currency, others, [_Deal(*row) for row in rows]


def _touches(session: Session, period: Period, deals: list[_Deal], *, with_idle: bool) -> _Touches:
    """Touches that any journey can hold: from the earliest deal window's start (or the
    period's start) to the period's end or the latest close."""
    lowest = _earliest(period, deals, with_idle=with_idle)
    latest = max([period.end.timestamp(), *(d.closed + 1 for d in deals if d.closed)])
    until = datetime.fromtimestamp(latest, UTC)
    if with_idle and session.get_bind().dialect.name == "postgresql":
        return _packed_touches(session, period, lowest, until)
    return _selected_touches(session, period, deals, lowest, until, with_idle=with_idle)


def _earliest(period: Period, deals: list[_Deal], *, with_idle: bool) -> datetime | None:
    starts = [period.start.timestamp()] if with_idle else []
    if deals and period.lookback_days is None:
        return None
    if deals and period.lookback_days is not None:
        starts.append(min(d.opened for d in deals) - period.lookback_days * DAY)
    if not starts:
        return None
    return datetime.fromtimestamp(min(starts) - 1, UTC)


def _unit_of_touch(session: Session, period: Period) -> ColumnElement[Any]:
    if period.scope == "contact":
        return _unit_key(session, Touchpoint.contact_id)
    return _unit_key(session, func.coalesce(Contact.account_id, Touchpoint.contact_id))


def _selected_touches(
    session: Session,
    period: Period,
    deals: list[_Deal],
    lowest: datetime | None,
    until: datetime,
    *,
    with_idle: bool,
) -> _Touches:
    group: Any = {
        "campaign": _text(Touchpoint.campaign_id),
        "channel": Touchpoint.channel,
        "touchpoint_type": Touchpoint.kind,
    }[period.group_by]
    unit = _unit_of_touch(session, period)
    query = select(unit, group, Touchpoint.kind, epoch_seconds(session, Touchpoint.occurred_at))
    if period.scope == "account":
        query = query.join(Contact, Contact.id == Touchpoint.contact_id)
    query = query.where(Touchpoint.occurred_at < until)
    if lowest is not None:
        query = query.where(Touchpoint.occurred_at >= lowest)
    if not with_idle:
        query = query.where(unit.in_({d.unit for d in deals}))
    table = np.array(session.execute(query).all(), dtype=object).reshape(-1, 4)
    labels = np.where(table[:, 1] == None, NO_CAMPAIGN, table[:, 1]).astype(str)  # noqa: E711
    groups, group_codes = np.unique(labels, return_inverse=True)
    kinds, kind_codes = np.unique(table[:, 2].astype(str), return_inverse=True)
    return _Touches(
        unit=table[:, 0],
        group=group_codes.reshape(-1).astype(np.int64),
        groups=tuple(str(g) for g in groups),
        kind=kind_codes.reshape(-1).astype(np.int64),
        kinds=tuple(str(k) for k in kinds),
        seconds=table[:, 3].astype(float),
    )


PACKED = np.dtype([("unit", ">i8"), ("group", ">i4"), ("kind", ">i4"), ("seconds", ">f8")])
PARTS = 256


def _packed_touches(
    session: Session, period: Period, lowest: datetime | None, until: datetime
) -> _Touches:
    """The whole period's touches on PostgreSQL, packed by the database: each touch is four
    big-endian numbers (unit hash, group and kind positions, epoch seconds) appended to one
    of 256 byte strings, so four million touches arrive as 256 values that numpy reads as
    an array — instead of Python building a row object per touch (which took 5 s of 10).
    Groups and kinds travel as positions in the lists below (0: no campaign, or a value
    not in the list)."""
    values = {
        "campaign": [c.hex for c in session.scalars(select(Campaign.id).order_by(Campaign.id))],
        "channel": [c.value for c in Channel],
        "touchpoint_type": [k.value for k in TouchpointKind],
    }[period.group_by]
    group = {
        "campaign": "c.n",
        "channel": "array_position(%(values)s::text[], t.channel)",
        "touchpoint_type": "array_position(%(values)s::text[], t.kind)",
    }[period.group_by]
    kinds = [k.value for k in TouchpointKind]
    unit = "t.contact_id" if period.scope == "contact" else "coalesce(p.account_id, t.contact_id)"
    people = "" if period.scope == "contact" else "JOIN contact p ON p.id = t.contact_id"
    statement = f"""
        SELECT string_agg(
                 int8send(uuid_hash_extended({unit}, 0))
                 || int4send(coalesce({group}, 0)::int4)
                 || int4send(coalesce(array_position(%(kinds)s::text[], t.kind), 0)::int4)
                 || float8send(date_part('epoch', t.occurred_at)),
                 ''::bytea)
        FROM touchpoint t {people}
        LEFT JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM campaign) c
               ON c.id = t.campaign_id
        WHERE t.occurred_at < %(until)s AND t.occurred_at >= %(lowest)s
        GROUP BY uuid_hash_extended({unit}, 0) & {PARTS - 1}"""  # noqa: S608 (fixed text)
    bounds = {"until": until, "lowest": lowest or datetime(1970, 1, 1, tzinfo=UTC)}
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor(binary=True) as cursor:
        cursor.execute(statement, {"values": values, "kinds": kinds, **bounds})
        rows = np.frombuffer(b"".join(r[0] for r in cursor.fetchall()), dtype=PACKED)
    none = NO_CAMPAIGN if period.group_by == "campaign" else "(other)"
    return _Touches(
        unit=rows["unit"].astype(np.int64),
        group=rows["group"].astype(np.int64),
        groups=(none, *values),
        kind=rows["kind"].astype(np.int64),
        kinds=("(other)", *kinds),
        seconds=rows["seconds"].astype(np.float64),
    )


def _text(column: Any) -> ColumnElement[str]:
    """A UUID column as 32 hex digits, as SQLite stores it and ``uuid.UUID.hex`` prints it."""
    return func.replace(cast(column, String), "-", "")


def _assemble(
    period: Period,
    found: tuple[str | None, list[str], list[_Deal]],
    touches: _Touches,
    *,
    with_idle: bool,
) -> History:
    """Journeys from touches and deals: touches sorted once by (unit, time), each deal's
    window cut out of its unit's run by binary search, then the units without a deal."""
    currency, others, deals = found
    deal_keys = np.array([d.unit for d in deals], dtype=touches.unit.dtype)
    keys, codes = np.unique(np.concatenate((touches.unit, deal_keys)), return_inverse=True)
    codes = codes.reshape(-1)
    touch_unit, deal_unit = codes[: touches.unit.size], codes[touches.unit.size :]
    order = np.lexsort((touches.seconds, touch_unit))
    touch_unit, seconds = touch_unit[order], touches.seconds[order]
    picked, owner = _windows(period, deals, deal_unit, touch_unit, seconds)
    kept = np.bincount(owner, minlength=len(deals)) > 0
    converting = int(kept.sum())
    journey = (np.cumsum(kept) - 1)[owner]
    idle_count = 0
    if with_idle:
        busy = np.zeros(len(keys), dtype=bool)
        busy[deal_unit[kept]] = True
        in_period = (seconds >= period.start.timestamp()) & (seconds < period.end.timestamp())
        idle = np.flatnonzero(~busy[touch_unit] & in_period)
        first = np.diff(touch_unit[idle], prepend=-1) != 0
        idle_count = int(first.sum())
        journey = np.concatenate((journey, converting + np.cumsum(first) - 1))
        picked = np.concatenate((picked, idle))
    chosen = [d for d, keep in zip(deals, kept, strict=True) if keep]
    nan = np.full(idle_count, np.nan)
    journeys = Journeys(
        journey=journey.astype(np.int64),
        group=touches.group[order][picked],
        at=seconds[picked] / DAY,
        converted=np.arange(converting + idle_count) < converting,
        value=np.concatenate(([float(d.amount) for d in chosen], np.zeros(idle_count))),
        groups=touches.groups,
        lead_at=np.concatenate((_days([d.lead for d in chosen]), nan)),
        opened_at=np.concatenate((_days([d.opened for d in chosen]), nan)),
        closed_at=np.concatenate(
            (_days([d.closed if period.outcome == "won" else None for d in chosen]), nan)
        ),
        kind=touches.kind[order][picked],
    )
    _, account_codes = np.unique([d.account_id.hex for d in chosen], return_inverse=True)
    account_of = np.concatenate((account_codes.reshape(-1), np.full(idle_count, -1)))
    return History(
        journeys=journeys,
        deals=Deals(
            ids=[d.id for d in chosen],
            amounts=[Decimal(d.amount) for d in chosen],
            accounts=[d.account_id for d in chosen],
            currency=currency,
            other_currencies=others,
        ),
        account_of=account_of.astype(np.int64),
        kinds=touches.kinds,
        group_by=period.group_by,
    )


def _windows(
    period: Period, deals: list[_Deal], deal_unit: Ints, touch_unit: Ints, seconds: Floats
) -> tuple[Ints, Ints]:
    """For each deal, the positions (in the (unit, time)-sorted touches) of its window's
    touches, and which deal each position belongs to. Touches and bounds become one sorted
    integer key, unit x span + milliseconds, so every deal is two binary searches."""
    if not deals or not len(seconds):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    opened = np.array([d.opened for d in deals], dtype=float)
    closed = np.array([d.closed if d.closed is not None else d.opened for d in deals])
    high = closed if period.outcome == "won" else opened
    low = opened - (period.lookback_days or 0) * DAY
    origin = min(seconds.min(), low.min()) - 1
    if period.lookback_days is None:
        low = np.full(len(deals), origin)
    span = int((max(seconds.max(), high.max()) - origin) * 1000) + 2
    key = touch_unit * span + ((seconds - origin) * 1000).astype(np.int64)
    left = np.searchsorted(key, deal_unit * span + np.ceil((low - origin) * 1000).astype(np.int64))
    right = np.searchsorted(
        key, deal_unit * span + ((high - origin) * 1000).astype(np.int64), side="right"
    )
    sizes = right - left
    owner = np.repeat(np.arange(len(deals)), sizes)
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(left, sizes) + offsets, owner


def _days(values: list[float | None]) -> Floats:
    return np.array([np.nan if v is None else v / DAY for v in values], dtype=float)


def campaign_names(session: Session, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Key and name of the campaigns among ``ids`` (labels of campaign grouping)."""
    wanted = [uuid.UUID(hex=i) for i in ids if i != NO_CAMPAIGN]
    if not wanted:
        return {}
    rows = session.execute(
        select(Campaign.id, Campaign.key, Campaign.name).where(Campaign.id.in_(wanted))
    )
    return {i.hex: (k, n) for i, k, n in rows}
