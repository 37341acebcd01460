"""Responses of the attribution API: seed 002 ``RevenueAttribution`` and the reports around it."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from revhub.core.schemas import ResponseModel


class Model(StrEnum):
    FIRST_TOUCH = "first_touch"
    LAST_TOUCH = "last_touch"
    LINEAR = "linear"
    POSITION_BASED = "position_based"
    TIME_DECAY = "time_decay"
    W_SHAPED = "w_shaped"
    FULL_PATH = "full_path"
    MARKOV = "markov"
    SHAPLEY = "shapley"


class GroupBy(StrEnum):
    CAMPAIGN = "campaign"
    CHANNEL = "channel"
    TOUCHPOINT_TYPE = "touchpoint_type"


class Outcome(StrEnum):
    WON = "won"
    PIPELINE = "pipeline"


class Scope(StrEnum):
    CONTACT = "contact"
    ACCOUNT = "account"


class Settings(ResponseModel):
    """What the figures were computed over."""

    start: datetime
    end: datetime
    outcome: Outcome
    scope: Scope
    lookback_days: int | None = Field(description="None: the look-back window was off")
    group_by: GroupBy
    currency: str | None = Field(description="Asked for, or that of most deals")
    other_currencies: list[str] = Field(
        description="The period's other deal currencies: ask for each with `currency=`"
    )


class Totals(ResponseModel):
    conversions: int = Field(description="Deals with at least one touch in their window")
    revenue: Decimal
    converting_journeys: int
    non_converting_journeys: int
    touches: int


class Breakdown(ResponseModel):
    touchpoint_type: str
    attributed_conversions: float
    attributed_revenue: Decimal


class Credit(ResponseModel):
    """One group's credit (a campaign, channel or touchpoint type)."""

    key: str = Field(description="Campaign id (hex), channel or touchpoint type")
    campaign_id: uuid.UUID | None = None
    campaign_key: str | None = None
    name: str
    attributed_conversions: float
    attributed_revenue: Decimal
    attributed_customers: int = Field(
        description="Accounts whose converting journeys it got credit in"
    )
    average_deal_size: Decimal | None = Field(description="Attributed revenue / conversions")
    confidence_score: float = Field(ge=0, le=1)
    standard_error: float | None = Field(None, description="Sampled Shapley only")
    attribution_breakdown: list[Breakdown]


class Report(ResponseModel):
    model_used: Model
    settings: Settings
    totals: Totals
    detail: dict[str, Any] = Field(description="The model's working (removal effects, …)")
    items: list[Credit]
    computed_at: datetime
    cached: bool


class RevenueAttribution(ResponseModel):
    """Seed 002 ``RevenueAttribution`` for one campaign, with the figures seed 000 asks for."""

    campaign_id: uuid.UUID
    campaign_key: str
    campaign_name: str
    total_revenue: Decimal = Field(description="Revenue attributed to the campaign")
    attribution_breakdown: list[Breakdown]
    model_used: Model
    confidence_score: float = Field(ge=0, le=1)
    attributed_conversions: float
    attributed_customers: int
    average_deal_size: Decimal | None
    settings: Settings
    totals: Totals
    computed_at: datetime


class ModelFigures(ResponseModel):
    attributed_conversions: float
    attributed_revenue: Decimal


class Comparison(ResponseModel):
    key: str
    name: str
    models: dict[str, ModelFigures]


class Compare(ResponseModel):
    settings: Settings
    totals: Totals
    items: list[Comparison]
    computed_at: datetime
