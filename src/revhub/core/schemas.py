"""Base classes for every domain's request and response models (DESIGN.md §3, §9.3).

Requests are strict: no unknown fields, no ``"7"`` or ``true`` where an integer is expected.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

T = TypeVar("T")


class RequestModel(BaseModel):
    """Strict request body. Fields that JSON carries as strings — enums, UUIDs, dates and
    times — take ``Field(strict=False)`` so ``"sales"`` or ``"2026-01-01T00:00:00Z"`` parse."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(ResponseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = Field(default=None, description="Opaque; absent on the last page.")


def item_errors(exc: ValidationError, prefix: str) -> list[dict[str, str]]:
    """Pydantic's errors for one item of a bulk request, as problem+json ``errors`` entries
    named under ``prefix`` (``body.leads[3].email``)."""
    out = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        field = f"{prefix}.{where}" if where else prefix
        out.append({"field": field, "message": error["msg"], "type": error["type"]})
    return out


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_8601_only(value: object) -> object:
    """JSON Schema's ``date-time`` is an RFC 3339 string; lax parsing would also take 0 or
    "0.5" as Unix seconds, so anything that does not start like a date is refused here."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError("expected an ISO 8601 date-time with a timezone, e.g. 2026-01-31T09:00:00Z")


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only), Field(strict=False)]
"""A timezone-aware date-time given as an ISO 8601 string (never a number)."""
