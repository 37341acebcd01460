"""Request and response bodies of the CRM routes; credentials go in and never come out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

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


class Connection(ResponseModel):
    id: uuid.UUID
    name: str
    crm: str
    base_url: str | None
    active: bool
    created_at: datetime


class ConnectionCheck(ResponseModel):
    connection: str
    crm: str
    ok: bool
    authenticated: bool
    missing_fields: dict[str, list[str]]
    detail: str
