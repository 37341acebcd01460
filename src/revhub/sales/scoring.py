"""Lead scoring and qualification (seed 004 "Email Nurturing → Sales Qualification").

The model is configuration (``scoring_default.yaml``, replaced through the API): a fit score
(0 to 100, points per matched ICP attribute), an engagement score (behavioural points, each
worth ``points * 0.5^(age / half_life_days)``, capped at 100) and an e-mail engagement score
built the same way from e-mail opens and clicks only. The total is the weighted mean of fit
and engagement.

MQL (seed 004), all four at once: e-mail engagement ≥ 70, content consumption ≥ 3 distinct
pieces, website activity ≥ 5 sessions, and demographic fit = ICP (fit ≥ ``fit_threshold``).
Content pieces and sessions are counted (not decayed) over ``lookback_days``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, cached_property
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_SCORE = 100


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Icp(Strict):
    countries: list[str] = Field(default_factory=list, max_length=300)
    industries: list[str] = Field(default_factory=list, max_length=300)
    min_employees: int | None = Field(default=None, ge=0)
    max_employees: int | None = Field(default=None, ge=0)
    seniority_keywords: list[str] = Field(default_factory=list, max_length=100)
    fit_threshold: int = Field(ge=0, le=MAX_SCORE)

    @cached_property
    def folded_industries(self) -> frozenset[str]:
        """The industries compared without case (worked out once per model, not per lead)."""
        return frozenset(i.casefold() for i in self.industries)

    @cached_property
    def folded_keywords(self) -> tuple[str, ...]:
        return tuple(keyword.casefold() for keyword in self.seniority_keywords)


class FitPoints(Strict):
    country: int = Field(ge=0, le=MAX_SCORE)
    industry: int = Field(ge=0, le=MAX_SCORE)
    company_size: int = Field(ge=0, le=MAX_SCORE)
    seniority: int = Field(ge=0, le=MAX_SCORE)
    business_email: int = Field(ge=0, le=MAX_SCORE)

    @model_validator(mode="after")
    def _at_most_100(self) -> FitPoints:
        if sum(self.model_dump().values()) > MAX_SCORE:
            raise ValueError("fit points must add up to at most 100")
        return self


class Behaviour(Strict):
    half_life_days: float = Field(gt=0, le=3650)
    lookback_days: int = Field(ge=1, le=3650)
    points: dict[str, int] = Field(max_length=100)
    email_engagement_points: dict[str, int] = Field(max_length=20)


class TotalWeights(Strict):
    fit: float = Field(ge=0, le=1)
    engagement: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> TotalWeights:
        if abs(self.fit + self.engagement - 1) > 1e-9:
            raise ValueError("fit and engagement weights must add up to 1")
        return self


class MqlCriteria(Strict):
    email_engagement: int = Field(ge=0, le=MAX_SCORE)
    content_pieces: int = Field(ge=0)
    web_sessions: int = Field(ge=0)
    icp_fit: bool


class ScoringModelDocument(Strict):
    """The whole model; the API validates a replacement against this before storing it."""

    icp: Icp
    fit_points: FitPoints
    behaviour: Behaviour
    total_weights: TotalWeights
    mql: MqlCriteria


@cache
def default_model() -> ScoringModelDocument:
    text = files("revhub.sales").joinpath("scoring_default.yaml").read_text()
    return ScoringModelDocument.model_validate(yaml.safe_load(text))


@dataclass(frozen=True)
class FitFacts:
    """What fit is judged on: the person and their company."""

    country: str | None
    industry: str | None
    employee_count: int | None
    job_title: str | None
    business_email: bool


@dataclass(frozen=True)
class Activity:
    """A behavioural touchpoint as scoring sees it."""

    kind: str
    occurred_at: datetime
    content_id: str | None = None


@dataclass(frozen=True)
class Score:
    fit: int
    engagement: int
    email_engagement: int
    content_pieces: int
    web_sessions: int
    icp_fit: bool
    total: int
    is_mql: bool
    reasons: list[dict[str, Any]] = field(default_factory=list)


def fit_score(model: ScoringModelDocument, facts: FitFacts) -> tuple[int, list[dict[str, Any]]]:
    icp, points = model.icp, model.fit_points
    checks = {
        "country": facts.country is not None and facts.country in icp.countries,
        "industry": facts.industry is not None
        and facts.industry.casefold() in icp.folded_industries,
        "company_size": _size_fits(icp, facts.employee_count),
        "seniority": _is_senior(icp, facts.job_title),
        "business_email": facts.business_email,
    }
    reasons = [
        {"rule": f"fit.{name}", "points": getattr(points, name)}
        for name, ok in checks.items()
        if ok
    ]
    return min(MAX_SCORE, sum(r["points"] for r in reasons)), reasons


def _size_fits(icp: Icp, employees: int | None) -> bool:
    if employees is None:
        return False
    low = icp.min_employees if icp.min_employees is not None else 0
    return employees >= low and (icp.max_employees is None or employees <= icp.max_employees)


def _is_senior(icp: Icp, title: str | None) -> bool:
    words = (title or "").casefold()
    return any(keyword in words for keyword in icp.folded_keywords)


def decay(age: timedelta, half_life_days: float) -> float:
    """``0.5^(age / half-life)``: what a point earned ``age`` ago is worth now (an event in
    the future counts in full)."""
    days = max(age.total_seconds(), 0) / 86_400
    return float(0.5 ** (days / half_life_days))


def score(
    model: ScoringModelDocument, facts: FitFacts, activities: Iterable[Activity], now: datetime
) -> Score:
    """The score of one person at ``now`` under ``model``, with each rule's contribution."""
    behaviour = model.behaviour
    since = now - timedelta(days=behaviour.lookback_days)
    fit, reasons = fit_score(model, facts)
    engagement = email = 0.0
    sessions, content = 0, set()
    by_kind: dict[str, float] = {}
    points, email_points = behaviour.points, behaviour.email_engagement_points
    for act in activities:
        if act.occurred_at < since:
            continue
        kind = act.kind
        worth = decay(now - act.occurred_at, behaviour.half_life_days)
        earned = points.get(kind, 0) * worth
        engagement += earned
        by_kind[kind] = by_kind.get(kind, 0.0) + earned
        email += email_points.get(kind, 0) * worth
        if kind == "web_session":
            sessions += 1
        elif kind == "content_download":
            content.add(act.content_id or f"{act.occurred_at.isoformat()}")
    reasons += [
        {"rule": f"behaviour.{kind}", "points": round(v, 2)} for kind, v in sorted(by_kind.items())
    ]
    return _qualify(model, fit, engagement, email, len(content), sessions, reasons)


def _qualify(
    model: ScoringModelDocument,
    fit: int,
    engagement_raw: float,
    email_raw: float,
    content: int,
    sessions: int,
    reasons: list[dict[str, Any]],
) -> Score:
    engagement = min(MAX_SCORE, round(engagement_raw))
    email = min(MAX_SCORE, round(email_raw))
    icp_fit = fit >= model.icp.fit_threshold
    weights, mql = model.total_weights, model.mql
    total = min(MAX_SCORE, round(weights.fit * fit + weights.engagement * engagement))
    is_mql = (
        email >= mql.email_engagement
        and content >= mql.content_pieces
        and sessions >= mql.web_sessions
        and (icp_fit or not mql.icp_fit)
    )
    return Score(fit, engagement, email, content, sessions, icp_fit, total, is_mql, reasons)
