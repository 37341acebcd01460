"""Attribution use cases: a period's report under one model, one campaign's seed 002
``RevenueAttribution``, every model side by side — each kept until its inputs change.

Money: the models share float weights; revenue is then handed out in cents from the exact
Decimal total of the deals (largest remainder), so the campaigns' revenue adds up to the
deals' revenue to the cent.

Confidence (0-1) of a group's figure = evidence x agreement, where evidence = n / (n + 10)
for n converting journeys that touched the group (few journeys, little confidence), and
agreement = 1 - the coefficient of variation of the group's conversions across the seven
rule-based models and the model used (models that disagree, little confidence), floored
at 0.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from revhub.attribution import sources
from revhub.attribution.credit import MODELS, RULE_BASED, Credit, Params, attribute
from revhub.attribution.journeys import Floats
from revhub.attribution.models import AttributionReport
from revhub.attribution.sources import History, Period
from revhub.contacts.models import Contact
from revhub.core.db import utcnow
from revhub.core.errors import FieldError, InvalidInput, NotFound
from revhub.sales.models import Campaign, Opportunity, Touchpoint

EVIDENCE_HALF = 10
FIRST_YEAR, LAST_YEAR = 1971, 2200
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Ask:
    """One question to the engine: which deals and journeys (``period``), how credited."""

    period: Period
    model: str = "linear"
    params: Params = field(default_factory=Params)

    def key(self, kind: str) -> str:
        plain = {"kind": kind, "model": self.model, **asdict(self.period), **asdict(self.params)}
        text = json.dumps(plain, default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def default_period(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end): by default the 365 days up to the next UTC midnight — a stable period,
    so repeated requests hit the cache all day. Years outside 1971-2200 are refused (a
    look-back before 1970 has no epoch time on every platform)."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
            message = f"give a year {FIRST_YEAR}-{LAST_YEAR}"
            raise InvalidInput([FieldError(f"query.{name}", message)])
    if end is None:
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    if start is None:
        start = end - timedelta(days=365)
    if start >= end:
        raise InvalidInput([FieldError("query.from", "must be before `to`")])
    return start, end


def report(session: Session, ask: Ask) -> dict[str, Any]:
    """Credit per group under ``ask.model``, with the totals it adds up to."""
    return _cached(session, ask.key("report"), lambda: _report(session, ask))


def campaign_attribution(session: Session, ask: Ask, *, campaign_id: uuid.UUID) -> dict[str, Any]:
    """Seed 002 ``calculateRevenueAttribution(campaignId)``: the campaign's line of the report."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("campaign", campaign_id)
    body = report(session, ask)
    item = next((i for i in body["items"] if i["key"] == campaign_id.hex), None)
    return {
        "campaign_id": campaign.id,
        "campaign_key": campaign.key,
        "campaign_name": campaign.name,
        "total_revenue": item["attributed_revenue"] if item else "0.00",
        "attribution_breakdown": item["attribution_breakdown"] if item else [],
        "model_used": body["model_used"],
        "confidence_score": item["confidence_score"] if item else 0.0,
        "attributed_conversions": item["attributed_conversions"] if item else 0.0,
        "attributed_customers": item["attributed_customers"] if item else 0,
        "average_deal_size": item["average_deal_size"] if item else None,
        "settings": body["settings"],
        "totals": body["totals"],
        "computed_at": body["computed_at"],
    }


def compare(session: Session, ask: Ask) -> dict[str, Any]:
    """Every model's credit per group, side by side."""
    return _cached(session, ask.key("compare"), lambda: _compare(session, ask))


def inputs_fingerprint(session: Session) -> str:
    """When touches, deals, people or campaigns last changed (index look-ups): a stored
    report computed under the same fingerprint is still right."""
    latest = session.execute(
        select(
            select(func.max(Touchpoint.created_at)).scalar_subquery(),
            select(func.max(Opportunity.updated_at)).scalar_subquery(),
            select(func.max(Contact.updated_at)).scalar_subquery(),
            select(func.max(Campaign.updated_at)).scalar_subquery(),
        )
    ).one()
    return "|".join(str(v) for v in latest)


def _cached(session: Session, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    inputs = inputs_fingerprint(session)
    stored = session.get(AttributionReport, key)
    if stored is not None and stored.inputs == inputs:
        return {**stored.body, "cached": True}
    body = json.loads(json.dumps(compute(), default=_plain))
    try:
        with session.begin_nested():
            if stored is None:
                session.add(AttributionReport(key=key, inputs=inputs, body=body))
            else:
                stored.inputs, stored.body, stored.computed_at = inputs, body, utcnow()
    except IntegrityError:
        pass  # a twin request stored the same report first
    return {**body, "cached": False}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


def _run(history: History, model: str, params: Params, field_name: str = "query.model") -> Credit:
    try:
        return attribute(model, history.journeys, params)
    except ValueError as exc:
        raise InvalidInput([FieldError(field_name, str(exc))]) from exc


def _report(session: Session, ask: Ask) -> dict[str, Any]:
    history = sources.read_history(session, ask.period)
    credit = _run(history, ask.model, ask.params)
    others = [_run(history, name, ask.params) for name in RULE_BASED if name != ask.model]
    lines = _Lines(
        history=history,
        credit=credit,
        names=_names(session, history),
        revenue=allocate(_total(history), credit.revenue),
        confidence=_confidence(history, [credit, *others]),
        by_kind=_by_kind(history, credit),
        customers=_customers(history, credit),
    )
    items = [lines.item(group) for group in _present(history)]
    items.sort(key=lambda i: (-Decimal(i["attributed_revenue"]), -i["attributed_conversions"]))
    detail = {k: v for k, v in credit.detail.items() if k != "standard_error"}
    return {
        "model_used": ask.model,
        "settings": _settings(ask.period, history),
        "totals": _totals(history),
        "detail": _labelled(detail, history, lines.names),
        "items": items,
        "computed_at": utcnow(),
    }


@dataclass(frozen=True, eq=False)
class _Lines:
    """What a report's line per group is made of."""

    history: History
    credit: Credit
    names: list[dict[str, Any]]
    revenue: list[Decimal]
    confidence: Floats
    by_kind: tuple[Floats, Floats]
    customers: Floats

    def item(self, group: int) -> dict[str, Any]:
        conversions = float(self.credit.conversions[group])
        revenue = self.revenue[group]
        errors = self.credit.detail.get("standard_error")
        return {
            **self.names[group],
            "attributed_conversions": round(conversions, 6),
            "attributed_revenue": revenue,
            "attributed_customers": int(self.customers[group]),
            "average_deal_size": (revenue / Decimal(conversions)).quantize(CENT)
            if conversions > 0
            else None,
            "confidence_score": round(float(self.confidence[group]), 3),
            "standard_error": round(errors[group], 6) if errors else None,
            "attribution_breakdown": self.breakdown(group),
        }

    def breakdown(self, group: int) -> list[dict[str, Any]]:
        """The group's credit by touchpoint type (revenue handed out in cents again)."""
        conversions, value = self.by_kind[0][group], self.by_kind[1][group]
        revenue = allocate(self.revenue[group], value)
        return [
            {
                "touchpoint_type": kind,
                "attributed_conversions": round(float(conversions[k]), 6),
                "attributed_revenue": revenue[k],
            }
            for k, kind in enumerate(self.history.kinds)
            if conversions[k] != 0 or revenue[k] != 0
        ]


def _compare(session: Session, ask: Ask) -> dict[str, Any]:
    history = sources.read_history(session, ask.period)
    names = _names(session, history)
    total = _total(history)
    credits = {name: _run(history, name, ask.params) for name in MODELS}
    revenue = {name: allocate(total, c.revenue) for name, c in credits.items()}
    items = [
        {
            "key": names[group]["key"],
            "name": names[group]["name"],
            "models": {
                name: {
                    "attributed_conversions": round(float(c.conversions[group]), 6),
                    "attributed_revenue": revenue[name][group],
                }
                for name, c in credits.items()
            },
        }
        for group in _present(history)
    ]
    return {
        "settings": _settings(ask.period, history),
        "totals": _totals(history),
        "items": items,
        "computed_at": utcnow(),
    }


def allocate(total: Decimal, weights: Floats) -> list[Decimal]:
    """``total`` split in cents in proportion to ``weights`` (largest remainder), so the
    parts add up to it exactly. Zero weights everywhere give zero parts."""
    weights = np.asarray(weights, dtype=float)
    if not np.isfinite(weights).all():
        raise ValueError("credit weights must be finite")
    whole = weights.sum()
    if len(weights) == 0 or whole == 0 or total == 0:
        return [Decimal("0.00")] * len(weights)
    cents = int((total / CENT).to_integral_value(ROUND_FLOOR))
    raw = weights / whole * cents
    floor = np.floor(raw).astype(np.int64)
    short = cents - int(floor.sum())
    if short > 0:
        floor[np.argsort(-(raw - floor), kind="stable")[:short]] += 1
    return [Decimal(int(c)) * CENT for c in floor]


def _total(history: History) -> Decimal:
    return sum(history.deals.amounts, Decimal("0.00"))


def _present(history: History) -> list[int]:
    return [int(g) for g in np.unique(history.journeys.group)]


def _names(session: Session, history: History) -> list[dict[str, Any]]:
    groups = history.journeys.groups
    campaigns = sources.campaign_names(session, groups) if history.group_by == "campaign" else {}
    names = []
    for label in groups:
        if label in campaigns:
            key, name = campaigns[label]
            names.append(
                {
                    "key": label,
                    "campaign_id": uuid.UUID(hex=label),
                    "campaign_key": key,
                    "name": name,
                }
            )
        else:
            names.append({"key": label, "campaign_id": None, "campaign_key": None, "name": label})
    return names


def _confidence(history: History, credits: list[Credit]) -> Floats:
    journeys = history.journeys
    converting = journeys.converted[journeys.journey]
    pairs = np.unique(journeys.group[converting] * journeys.count + journeys.journey[converting])
    touched = np.bincount(pairs // max(journeys.count, 1), minlength=len(journeys.groups))
    evidence = touched / (touched + EVIDENCE_HALF)
    table = np.stack([c.conversions for c in credits])
    mean = table.mean(axis=0)
    spread = np.divide(table.std(axis=0), mean, out=np.ones_like(mean), where=mean > 0)
    return np.asarray(evidence * np.clip(1 - spread, 0, 1), dtype=float)


def _customers(history: History, credit: Credit) -> Floats:
    """Per group: accounts of converting journeys in which it earned credit (touched it, for
    the data-driven models, which credit groups rather than touches)."""
    journeys = history.journeys
    earned = journeys.converted[journeys.journey]
    if credit.touch_shares is not None:
        earned &= credit.touch_shares > 0
    account = history.account_of[journeys.journey[earned]]
    width = int(history.account_of.max()) + 1 if history.account_of.size else 1
    pairs = np.unique(journeys.group[earned] * width + account)
    return np.bincount(pairs // width, minlength=len(journeys.groups)).astype(float)


def _by_kind(history: History, credit: Credit) -> tuple[Floats, Floats]:
    """Each group's conversions and revenue weight split by touchpoint type: the touches' own
    shares for rule-based models; for data-driven ones the group's credit split as its
    linear (per-touch) credit is."""
    journeys = history.journeys
    kinds = max(len(history.kinds), 1)
    shares = credit.touch_shares if credit.touch_shares is not None else 1.0 / journeys.length
    cell = journeys.group * kinds + journeys.kind
    size = len(journeys.groups) * kinds
    converted = shares * journeys.converted[journeys.journey]
    conversions: Floats = np.bincount(cell, converted, size).astype(float).reshape(-1, kinds)
    value: Floats = np.bincount(cell, shares * journeys.value[journeys.journey], size).astype(float)
    value = value.reshape(-1, kinds)
    if credit.touch_shares is None:
        conversions = _rescaled(conversions, credit.conversions)
        value = _rescaled(value, credit.revenue)
    return conversions, value


def _rescaled(table: Floats, totals: Floats) -> Floats:
    sums = table.sum(axis=1, keepdims=True)
    scaled = np.divide(table * totals[:, None], sums, out=np.zeros_like(table), where=sums != 0)
    return np.asarray(scaled, dtype=float)


def _settings(period: Period, history: History) -> dict[str, Any]:
    return {
        "start": period.start,
        "end": period.end,
        "outcome": period.outcome,
        "scope": period.scope,
        "lookback_days": period.lookback_days,
        "group_by": period.group_by,
        "currency": history.deals.currency or period.currency,
        "other_currencies": history.deals.other_currencies,
    }


def _totals(history: History) -> dict[str, Any]:
    journeys = history.journeys
    converting = int(journeys.converted.sum())
    return {
        "conversions": converting,
        "revenue": _total(history),
        "converting_journeys": converting,
        "non_converting_journeys": journeys.count - converting,
        "touches": int(journeys.journey.size),
    }


def _labelled(
    detail: dict[str, Any], history: History, names: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per-group lists of a model's working as {group key: value}, for people to read."""
    present = set(_present(history))
    return {
        k: {names[g]["key"]: round(x, 6) for g, x in enumerate(v) if g in present}
        if isinstance(v, list)
        else v
        for k, v in detail.items()
    }
