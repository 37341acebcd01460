"""Request and response bodies of the CRM routes; credentials go in and never come out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from revhub.core.schemas import RequestModel, ResponseModel

Vendor = Literal["salesforce", "hubspot", "pipedrive"]


class ConnectionCreate(RequestModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="e.g. hubspot-eu")
    crm: Vendor
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        max_length=300,
        description="The API (Salesforce: login) host, if not the vendor's public one.",
    )
    credentials: dict[str, str] = Field(
        description="HubSpot: access_token (+ refresh_token, client_id, client_secret); "
        "Pipedrive: api_token or access_token (+ the same); Salesforce: client_id with "
        "client_secret, or with username and private_key (JWT bearer)."
    )
    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of deal amounts the CRM sends without one.",
    )


class Connection(ResponseModel):
    id: uuid.UUID
    name: str
    crm: str
    base_url: str | None
    currency: str
    active: bool
    created_at: datetime


class ConnectionCheck(ResponseModel):
    connection: str
    crm: str
    ok: bool
    authenticated: bool
    missing_fields: dict[str, list[str]]
    detail: str


class SyncRequested(ResponseModel):
    connection: str
    full: bool
    requested_at: datetime
    detail: str


class SyncRun(ResponseModel):
    id: uuid.UUID
    connection_id: uuid.UUID
    direction: str = Field(description="push, pull or reconcile")
    kind: str = Field(description="contact or deal")
    trigger: str = Field(description="manual, schedule, realtime or api")
    full: bool
    status: str = Field(description="running, succeeded, partial or failed")
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int] = Field(
        description="Rows by outcome: created, updated, unchanged, deleted, failed"
    )
    paused_seconds: float = Field(description="Time spent waiting out the vendor's rate limits")
    detail: str


class FailedRow(ResponseModel):
    kind: str
    hub_id: uuid.UUID
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime


class Conflict(ResponseModel):
    id: uuid.UUID
    connection_id: uuid.UUID
    kind: str
    hub_id: uuid.UUID
    crm_id: str
    field: str
    hub_value: Any
    crm_value: Any
    hub_changed_at: datetime
    crm_changed_at: datetime
    status: str
    resolution: str | None
    resolved_by: str | None
    detected_at: datetime
    resolved_at: datetime | None


class ConflictResolution(RequestModel):
    side: Literal["hub", "crm"] = Field(description="Whose value stands")


class Discrepancy(ResponseModel):
    hub_id: uuid.UUID | None
    crm_id: str | None
    problem: str


class Reconciliation(ResponseModel):
    run_id: uuid.UUID
    connection: str
    compared: int
    matching: int
    accuracy_percent: float = Field(
        description="Matching records of those compared; seed target 99.95"
    )
    meets_target: bool
    discrepancies: list[Discrepancy] = Field(description="The first 100")
