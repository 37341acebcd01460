"""Opaque cursors: the client hands back what it was given and never builds one itself."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from revhub.core.errors import FieldError, InvalidInput

MAX_LIMIT = 500
T = TypeVar("T")
M = TypeVar("M", bound="NewestFirst")


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def next_after(rows: Sequence[Any], limit: int) -> str | None:
    """The cursor after the last of ``rows`` (by its ``id``), or None on the last page."""
    return encode_cursor({"after": str(rows[-1].id)}) if len(rows) == limit else None


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position a cursor holds, or a 422 naming ``query.cursor`` when it was not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise foreign_cursor() from None
    return value


def cursor_field(cursor: str | None, name: str, parse: Callable[[Any], T]) -> T | None:
    """Field ``name`` of a cursor, parsed by ``parse``; None when there is no cursor."""
    if cursor is None:
        return None
    try:
        return parse(decode_cursor(cursor)[name])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise foreign_cursor() from None


def position(value: object) -> int:
    """A cursor's integer position: a plain int that fits a 64-bit column."""
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError("not a position")
    return value


def foreign_cursor() -> InvalidInput:
    """The error for a cursor this API did not issue (or whose position no longer exists)."""
    return InvalidInput(
        [FieldError("query.cursor", "not a cursor this API issued; omit it to start over")]
    )


class NewestFirst(Protocol):
    """A table listed newest first: it has ``id`` and ``created_at``."""

    id: Any
    created_at: Any


def newest_first(session: Session, model: type[M], *, after: uuid.UUID | None) -> Select[Any]:
    """``model`` newest first by (created_at, id), continuing after the row ``after`` (the
    last id of the previous page); a cursor naming a row that is gone is refused."""
    query = select(model).order_by(model.created_at.desc(), model.id.desc())
    if after is None:
        return query
    last = session.get(model, after)
    if last is None:
        raise foreign_cursor()
    return query.where(
        (model.created_at < last.created_at)
        | ((model.created_at == last.created_at) & (model.id < last.id))
    )
