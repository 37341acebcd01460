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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import numpy as np
from sqlalchemy import ColumnElement, Float, String, cast, func, select
from sqlalchemy.orm import Session

from revhub.attribution.journeys import Floats, Ints, Journeys
from revhub.contacts.models import Contact
from revhub.core.errors import FieldError, InvalidInput
from revhub.sales.models import Campaign, Lead, Opportunity, Touchpoint

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
    deals = _deals(session, period, deal_ids)
    touches = _touches(session, period, deals, with_idle=not deal_ids)
    return _assemble(period, deals, touches, with_idle=not deal_ids)


def _currency(session: Session, period: Period, query: Any) -> str | None:
    if period.currency is not None:
        return period.currency
    found = sorted(session.scalars(query.with_only_columns(Opportunity.currency).distinct()).all())
    if len(found) > 1:
        message = f"deals in this period are in {', '.join(found)}; choose one with currency="
        raise InvalidInput([FieldError("query.currency", message)])
    return found[0] if found else None


def _deals(session: Session, period: Period, deal_ids: Sequence[uuid.UUID]) -> list[Any]:
    query = select(
        Opportunity.id,
        Opportunity.account_id,
        Opportunity.primary_contact_id,
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
    currency = None
    if deal_ids:
        query = query.where(Opportunity.id.in_(deal_ids))
    else:
        currency = _currency(session, period, query)
        query = query.where(Opportunity.currency == currency)
    query = query.order_by(Opportunity.id)
    rows = session.execute(query).all()
    if period.scope == "contact":
        rows = [r for r in rows if r[2] is not None]
    return [(currency, *r) for r in rows]


def _touches(session: Session, period: Period, deals: list[Any], *, with_idle: bool) -> list[Any]:
    """Touches that any journey can hold: from the earliest deal window's start (or the
    period's start) to the period's end."""
    starts = [period.start.timestamp()] if with_idle else []
    lookback = None if period.lookback_days is None else period.lookback_days * DAY
    if deals and lookback is None:
        starts = []
    elif deals and lookback is not None:
        starts.append(min(d[5] for d in deals) - lookback)
    group: Any = {
        "campaign": _text(Touchpoint.campaign_id),
        "channel": Touchpoint.channel,
        "touchpoint_type": Touchpoint.kind,
    }[period.group_by]
    query = (
        select(
            _text(Touchpoint.contact_id),
            _text(Contact.account_id),
            cast(group, String),
            Touchpoint.kind,
            epoch_seconds(session, Touchpoint.occurred_at),
        )
        .join(Contact, Contact.id == Touchpoint.contact_id)
        .where(Touchpoint.occurred_at < max(period.end, _latest_close(deals, period)))
    )
    if starts:
        lowest = datetime.fromtimestamp(min(starts), period.start.tzinfo) - timedelta(seconds=1)
        query = query.where(Touchpoint.occurred_at >= lowest)
    if not with_idle:
        units = {str(d[3] if period.scope == "contact" else d[2]) for d in deals}
        column = Touchpoint.contact_id if period.scope == "contact" else Contact.account_id
        query = query.where(column.in_([uuid.UUID(u) for u in units]))
    return list(session.execute(query).all())


def _text(column: Any) -> ColumnElement[str]:
    """A UUID column as 32 hex digits, as SQLite stores it and ``uuid.UUID.hex`` prints it."""
    return func.replace(cast(column, String), "-", "")


def _latest_close(deals: list[Any], period: Period) -> datetime:
    closes = [d[6] for d in deals if d[6] is not None]
    if not closes:
        return period.end
    return datetime.fromtimestamp(max(closes) + 1, period.start.tzinfo)


def _assemble(period: Period, deals: list[Any], touches: list[Any], *, with_idle: bool) -> History:
    table = np.array(touches, dtype=object).reshape(-1, 5)
    contact_scope = period.scope == "contact"
    no_account = table[:, 1] == None  # noqa: E711 (element-wise on an object array)
    unit_text = np.where(contact_scope | no_account, table[:, 0], table[:, 1]).astype(str)
    deal_units = np.array([_key(d[3] if contact_scope else d[2]) for d in deals], dtype=str)
    units, codes = np.unique(np.concatenate((unit_text, deal_units)), return_inverse=True)
    touch_unit, deal_unit = codes[: len(table)], codes[len(table) :]
    seconds = table[:, 4].astype(float)
    order = np.lexsort((seconds, touch_unit))
    picks, owner = _windows(period, deals, deal_unit, touch_unit[order], seconds[order])
    kept = np.bincount(owner, minlength=len(deals)) > 0
    converting = int(kept.sum())
    journey, picked = (np.cumsum(kept) - 1)[owner], order[picks]
    idle_count = 0
    if with_idle:
        busy = np.zeros(len(units), dtype=bool)
        busy[deal_unit[kept]] = True
        in_period = (seconds >= period.start.timestamp()) & (seconds < period.end.timestamp())
        idle = np.flatnonzero(~busy[touch_unit] & in_period)
        idle_units, idle_journey = np.unique(touch_unit[idle], return_inverse=True)
        idle_count = len(idle_units)
        journey = np.concatenate((journey, converting + idle_journey.reshape(-1)))
        picked = np.concatenate((picked, idle))
    chosen = [d for d, keep in zip(deals, kept, strict=True) if keep]
    labels = np.where(table[:, 2] == None, NO_CAMPAIGN, table[:, 2]).astype(str)  # noqa: E711
    groups, group_codes = np.unique(labels, return_inverse=True)
    kinds, kind_codes = np.unique(table[:, 3].astype(str), return_inverse=True)
    nan = np.full(idle_count, np.nan)
    journeys = Journeys.build(
        journey=journey.astype(np.int64),
        group=group_codes.reshape(-1)[picked],
        at=seconds[picked] / DAY,
        converted=np.arange(converting + idle_count) < converting,
        value=np.concatenate(([float(d[4]) for d in chosen], nan * 0)),
        groups=tuple(str(g) for g in groups),
        lead_at=np.concatenate((_days([d[7] for d in chosen]), nan)),
        opened_at=np.concatenate((_days([d[5] for d in chosen]), nan)),
        closed_at=np.concatenate(
            (_days([d[6] if period.outcome == "won" else None for d in chosen]), nan)
        ),
        kind=kind_codes.reshape(-1)[picked],
    )
    _, account_codes = np.unique([_key(d[2]) for d in chosen], return_inverse=True)
    account_of = np.concatenate((account_codes.reshape(-1), np.full(idle_count, -1)))
    return History(
        journeys=journeys,
        deals=Deals(
            ids=[d[1] for d in chosen],
            amounts=[Decimal(d[4]) for d in chosen],
            accounts=[d[2] for d in chosen],
            currency=deals[0][0] if deals else None,
        ),
        account_of=account_of.astype(np.int64),
        kinds=tuple(str(k) for k in kinds),
        group_by=period.group_by,
    )


def _windows(
    period: Period, deals: list[Any], deal_unit: Ints, touch_unit: Ints, seconds: Floats
) -> tuple[Ints, Ints]:
    """For each deal, the positions (in the (unit, time)-sorted touches) of its window's
    touches, and which deal each position belongs to. Touches and bounds become one sorted
    integer key, unit x span + milliseconds, so every deal is two binary searches."""
    if not deals or not len(seconds):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    opened = np.array([d[5] for d in deals], dtype=float)
    closed = np.array([d[6] if d[6] is not None else d[5] for d in deals], dtype=float)
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


def _key(value: Any) -> str:
    return value.hex if isinstance(value, uuid.UUID) else str(value or "")


def campaign_names(session: Session, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Key and name of the campaigns among ``ids`` (labels of campaign grouping)."""
    wanted = [uuid.UUID(hex=i) for i in ids if i != NO_CAMPAIGN]
    if not wanted:
        return {}
    rows = session.execute(
        select(Campaign.id, Campaign.key, Campaign.name).where(Campaign.id.in_(wanted))
    )
    return {i.hex: (k, n) for i, k, n in rows}
