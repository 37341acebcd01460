"""Request and response models of the contacts API."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from revhub.contacts.stages import Stage
from revhub.core.schemas import RequestModel, ResponseModel


class Purpose(StrEnum):
    EMAIL_MARKETING = "email_marketing"
    TRACKING = "tracking"


class IdentityKind(StrEnum):
    EMAIL = "email"
    ANONYMOUS = "anonymous"
    SALESFORCE = "crm:salesforce"
    HUBSPOT = "crm:hubspot"
    PIPEDRIVE = "crm:pipedrive"
    PRODUCT_USER = "product_user"


class Account(ResponseModel):
    id: uuid.UUID
    domain: str
    name: str
    industry: str | None
    employee_count: int | None
    country: str | None
    created_at: datetime


class StageChange(ResponseModel):
    from_stage: Stage | None
    to_stage: Stage
    changed_at: datetime
    reason: str
    source: str


class ConsentState(ResponseModel):
    purpose: Purpose
    granted: bool
    source: str
    recorded_at: datetime


class Identity(ResponseModel):
    kind: str
    value: str | None = Field(description="Readable for every kind except e-mail, shown above.")


class ContactSummary(ResponseModel):
    id: uuid.UUID
    account_id: uuid.UUID | None
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    job_title: str | None
    country: str | None
    lead_source: str | None
    quality_score: int | None
    stage: Stage
    stage_changed_at: datetime
    created_at: datetime


class Contact(ContactSummary):
    phone: str | None
    identities: list[Identity]
    consent: list[ConsentState]
    stage_history: list[StageChange]


class StageUpdate(RequestModel):
    stage: Stage = Field(strict=False)
    reason: str = Field(min_length=1, max_length=500)


class ConsentCreate(RequestModel):
    purpose: Purpose = Field(strict=False)
    granted: bool
    source: str = Field(min_length=1, max_length=200, examples=["preference-centre"])


class IdentityCreate(RequestModel):
    kind: IdentityKind = Field(strict=False)
    value: str = Field(min_length=1, max_length=254)
