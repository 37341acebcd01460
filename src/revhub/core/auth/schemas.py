"""Request and response bodies of the credential endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from revhub.core.auth.scopes import Role
from revhub.core.schemas import RequestModel, ResponseModel


class ApiKeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key.")
    role: Role = Field(strict=False, description="Grants this role's scopes.")
    expires_in_days: int | None = Field(
        default=90, ge=1, le=3650, description="Omit or null for a key that never expires."
    )


class ApiKey(ResponseModel):
    id: uuid.UUID = Field(description="Also the OAuth 2.0 client_id of this key.")
    name: str
    role: Role
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="Shown once: store it now. Use as X-API-Key or client_secret.")


class Me(ResponseModel):
    credential_id: uuid.UUID
    name: str
    role: Role
    scopes: list[str]
    via: Literal["api_key", "oauth"]


class AccessToken(ResponseModel):
    """RFC 6749 §5.1 token response."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (the RFC 6749 token type, not a secret)
    expires_in: int
    scope: str
