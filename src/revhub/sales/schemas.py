"""Request and response models of the sales API (seed 000 "Sales Integration APIs")."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, model_validator

from revhub.contacts.stages import Stage
from revhub.core.schemas import RequestModel, ResponseModel, Timestamp

MAX_BULK = 1000
Text100 = Annotated[str, Field(max_length=100)]


class CaptureType(StrEnum):
    """Seed 000 ``capture_events``."""

    FORM_SUBMISSION = "form_submission"
    EMAIL_SIGNUP = "email_signup"
    WEBINAR_REGISTRATION = "webinar_registration"


class Channel(StrEnum):
    EMAIL = "email"
    WEB = "web"
    ORGANIC_SEARCH = "organic_search"
    PAID_SEARCH = "paid_search"
    PAID_SOCIAL = "paid_social"
    SOCIAL = "social"
    DISPLAY = "display"
    WEBINAR = "webinar"
    EVENT = "event"
    CONTENT = "content"
    REFERRAL = "referral"
    PARTNER = "partner"
    DIRECT = "direct"
    SALES = "sales"


class TouchpointKind(StrEnum):
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    CONTENT_DOWNLOAD = "content_download"
    WEB_SESSION = "web_session"
    WEBINAR_REGISTRATION = "webinar_registration"
    WEBINAR_ATTENDANCE = "webinar_attendance"
    FORM_SUBMISSION = "form_submission"
    EMAIL_SIGNUP = "email_signup"
    DEMO_REQUEST = "demo_request"
    EVENT_ATTENDANCE = "event_attendance"
    AD_CLICK = "ad_click"
    SOCIAL_ENGAGEMENT = "social_engagement"
    MEETING = "meeting"


class ConsentIn(RequestModel):
    email_marketing: bool | None = None
    tracking: bool | None = None


class LeadCreate(RequestModel):
    """One lead. ``email``, ``first_name`` and ``company`` are required (seed 002)."""

    capture_type: CaptureType = Field(default=CaptureType.FORM_SUBMISSION, strict=False)
    email: str = Field(max_length=254, examples=["ada@example.com"])
    first_name: str = Field(max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    company: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    job_title: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=60)
    industry: str | None = Field(default=None, max_length=100)
    employee_count: int | None = Field(default=None, ge=1, le=10_000_000)
    website: str | None = Field(default=None, max_length=253)
    lead_source: str | None = Field(default=None, max_length=64)
    campaign: str | None = Field(default=None, max_length=100, description="Campaign key")
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=128)
    consent: ConsentIn | None = None
    captured_at: Timestamp | None = None


class LeadBulk(RequestModel):
    leads: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BULK,
        description="Up to 1,000 LeadCreate objects; each is validated and processed on its "
        "own and reported in `results` at the same index.",
    )


class Validation(ResponseModel):
    quality_score: int
    problems: list[str]
    transformations: list[str]


class PossibleDuplicate(ResponseModel):
    contact_id: uuid.UUID
    similarity: float


class Deduplication(ResponseModel):
    outcome: str = Field(description="created | updated (same e-mail) | merged (identities met)")
    contact_id: uuid.UUID
    merged_contact_ids: list[uuid.UUID]
    possible_duplicates: list[PossibleDuplicate]


class Scoring(ResponseModel):
    fit: int
    engagement: int
    email_engagement: int
    content_pieces: int
    web_sessions: int
    icp_fit: bool
    total: int
    stage: Stage
    became_mql: bool
    reasons: list[dict[str, Any]]


class CrmHandoff(ResponseModel):
    lead_id: uuid.UUID
    status: str
    event_id: uuid.UUID


class AssignmentOut(ResponseModel):
    rep_id: uuid.UUID | None
    rep_name: str | None
    territory: str | None
    queued: bool
    reason: str


class FollowUp(ResponseModel):
    triggered: bool
    sequence: str | None
    reason: str


class LeadSteps(ResponseModel):
    """Seed 002's six steps, in order."""

    validation: Validation
    deduplication: Deduplication
    scoring: Scoring
    crm: CrmHandoff
    assignment: AssignmentOut
    follow_up: FollowUp


class LeadResult(ResponseModel):
    lead_id: uuid.UUID
    contact_id: uuid.UUID
    steps: LeadSteps


class BulkItem(ResponseModel):
    index: int
    status: int
    result: LeadResult | None = None
    errors: list[dict[str, str]] | None = None


class BulkResult(ResponseModel):
    accepted: int
    rejected: int
    results: list[BulkItem]


class CampaignCreate(RequestModel):
    key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    name: str = Field(min_length=1, max_length=200)
    channel: Channel = Field(strict=False)
    starts_on: Timestamp | None = None
    ends_on: Timestamp | None = None
    cost_centre: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _ends_after_start(self) -> CampaignCreate:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        return self


class CampaignUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    starts_on: Timestamp | None = None
    ends_on: Timestamp | None = None
    cost_centre: str | None = Field(default=None, max_length=64)


class Campaign(ResponseModel):
    id: uuid.UUID
    key: str
    name: str
    channel: str
    starts_on: datetime | None
    ends_on: datetime | None
    cost_centre: str | None
    created_at: datetime


class TouchpointCreate(RequestModel):
    """One touchpoint; the person is named by ``contact_id``, ``email`` or ``anonymous_id``
    (an unknown anonymous id starts an anonymous profile)."""

    contact_id: uuid.UUID | None = Field(default=None, strict=False)
    email: str | None = Field(default=None, max_length=254)
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=128)
    campaign: str | None = Field(default=None, max_length=100, description="Campaign key")
    channel: Channel = Field(strict=False)
    kind: TouchpointKind = Field(strict=False)
    occurred_at: Timestamp
    content_id: str | None = Field(default=None, max_length=128)
    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=30)

    @model_validator(mode="after")
    def _names_someone(self) -> TouchpointCreate:
        if not (self.contact_id or self.email or self.anonymous_id):
            raise ValueError("name the person: contact_id, email or anonymous_id")
        return self


class TouchpointBulk(RequestModel):
    touchpoints: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BULK, description="Up to 1,000 TouchpointCreate objects."
    )


class Touchpoint(ResponseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    campaign_id: uuid.UUID | None
    channel: str
    kind: str
    occurred_at: datetime
    external_id: str | None


class TouchpointItem(ResponseModel):
    index: int
    status: int
    id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    errors: list[dict[str, str]] | None = None


class TouchpointBulkResult(ResponseModel):
    accepted: int
    rejected: int
    results: list[TouchpointItem]


class TerritoryCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=10_000)
    countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(
        default_factory=list, max_length=250
    )
    regions: list[Annotated[str, Field(pattern=r"^(NA|LATAM|EMEA|APAC)$")]] = Field(
        default_factory=list, max_length=4
    )
    industries: list[Text100] = Field(default_factory=list, max_length=100)
    min_employees: int | None = Field(default=None, ge=0, le=10_000_000)
    max_employees: int | None = Field(default=None, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _size_range(self) -> TerritoryCreate:
        low, high = self.min_employees, self.max_employees
        if low is not None and high is not None and high < low:
            raise ValueError("max_employees is below min_employees")
        return self


class TerritoryUpdate(RequestModel):
    """Change a territory's rules; leads already assigned keep their owner."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=0, le=10_000)
    countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] | None = Field(
        default=None, max_length=250
    )
    regions: list[Annotated[str, Field(pattern=r"^(NA|LATAM|EMEA|APAC)$")]] | None = Field(
        default=None, max_length=4
    )
    industries: list[Text100] | None = Field(default=None, max_length=100)
    min_employees: int | None = Field(default=None, ge=0, le=10_000_000)
    max_employees: int | None = Field(default=None, ge=0, le=10_000_000)


class Territory(ResponseModel):
    id: uuid.UUID
    name: str
    priority: int
    countries: list[str]
    regions: list[str]
    industries: list[str]
    min_employees: int | None
    max_employees: int | None


class RepCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    territory_id: uuid.UUID | None = Field(default=None, strict=False)
    capacity: int = Field(default=1, ge=1, le=100)


class RepUpdate(RequestModel):
    territory_id: uuid.UUID | None = Field(default=None, strict=False)
    capacity: int | None = Field(default=None, ge=1, le=100)
    active: bool | None = None


class Rep(ResponseModel):
    id: uuid.UUID
    name: str
    email: str
    territory_id: uuid.UUID | None
    capacity: int
    active: bool
    assigned_count: int


class RepChange(ResponseModel):
    rep: Rep
    reassigned_leads: int


class OpportunityCreate(RequestModel):
    account_id: uuid.UUID | None = Field(default=None, strict=False)
    account_domain: str | None = Field(default=None, max_length=253)
    primary_contact_id: uuid.UUID | None = Field(default=None, strict=False)
    name: str = Field(min_length=1, max_length=200)
    amount: Decimal = Field(strict=False, ge=0, max_digits=18, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["USD"])
    stage: str = Field(min_length=1, max_length=64)
    is_closed: bool = False
    is_closed_won: bool = False
    opened_at: Timestamp
    closed_at: Timestamp | None = None
    external_id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _consistent(self) -> OpportunityCreate:
        if not (self.account_id or self.account_domain):
            raise ValueError("name the account: account_id or account_domain")
        if self.is_closed_won and not self.is_closed:
            raise ValueError("is_closed_won needs is_closed")
        if self.closed_at and self.closed_at < self.opened_at:
            raise ValueError("closed_at is before opened_at")
        return self


class OpportunityUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    amount: Decimal | None = Field(
        default=None, strict=False, ge=0, max_digits=18, decimal_places=2
    )
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    stage: str | None = Field(default=None, min_length=1, max_length=64)
    is_closed: bool | None = None
    is_closed_won: bool | None = None
    closed_at: Timestamp | None = None
    primary_contact_id: uuid.UUID | None = Field(default=None, strict=False)


class Opportunity(ResponseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    primary_contact_id: uuid.UUID | None
    name: str
    amount: Decimal
    currency: str
    stage: str
    is_closed: bool
    is_closed_won: bool
    opened_at: datetime
    closed_at: datetime | None
    external_id: str | None
    created_at: datetime
    updated_at: datetime


class Notification(ResponseModel):
    id: uuid.UUID
    kind: str
    contact_id: uuid.UUID
    rep_id: uuid.UUID | None
    message: str
    created_at: datetime


class ScoreOut(ResponseModel):
    contact_id: uuid.UUID
    fit: int
    engagement: int
    total: int
    email_engagement: int
    content_pieces: int
    web_sessions: int
    icp_fit: bool
    model_version: int
    computed_at: datetime


class ScoreChangeOut(ResponseModel):
    changed_at: datetime
    fit: int
    engagement: int
    total: int
    delta: int
    trigger: str
    reasons: list[dict[str, Any]]


class ScoreDetail(ResponseModel):
    score: ScoreOut
    history: list[ScoreChangeOut]


class DuplicateReviewOut(ResponseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    candidate_id: uuid.UUID
    similarity: float
    status: str
    created_at: datetime


class PerformanceQueryOut(ResponseModel):
    start: datetime
    end: datetime
    campaign_id: uuid.UUID | None
    channel: str | None
    granularity: str


class PipelineByCurrency(ResponseModel):
    """Deals opened in the period, in one currency (currencies are never added together)."""

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


class VelocityBucket(ResponseModel):
    period_start: date
    mqls: int
    growth_pct: Decimal | None


class LeadVelocity(ResponseModel):
    granularity: str
    total_mqls: int
    buckets: list[VelocityBucket]


class StageConversion(ResponseModel):
    from_stage: Stage
    to_stage: Stage
    entered: int
    converted: int
    rate: Decimal | None
    median_days_in_stage: Decimal | None


class SourceQuality(ResponseModel):
    source: str
    leads: int
    mqls: int
    sqls: int
    mql_to_sql_rate: Decimal | None
    avg_quality_score: Decimal | None


class Performance(ResponseModel):
    """Seed 000 "Performance Tracking API": pipeline influenced by marketing, lead velocity,
    stage conversion and lead quality by source."""

    query: PerformanceQueryOut
    pipeline: list[PipelineByCurrency]
    lead_velocity: LeadVelocity
    conversion: list[StageConversion]
    lead_quality: list[SourceQuality]
