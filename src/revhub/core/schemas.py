"""Base classes for every domain's request and response models (DESIGN.md §3, §9.3).

Requests are strict: no unknown fields, no ``"7"`` or ``true`` where an integer is expected.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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
