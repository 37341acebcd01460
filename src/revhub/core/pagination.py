"""Opaque cursors: the client hands back what it was given and never builds one itself."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from revhub.core.errors import FieldError, InvalidInput

MAX_LIMIT = 500
T = TypeVar("T")


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position a cursor holds, or a 422 naming ``query.cursor`` when it was not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise _foreign_cursor() from None
    return value


def cursor_field(cursor: str | None, name: str, parse: Callable[[Any], T]) -> T | None:
    """Field ``name`` of a cursor, parsed by ``parse``; None when there is no cursor."""
    if cursor is None:
        return None
    try:
        return parse(decode_cursor(cursor)[name])
    except (KeyError, TypeError, ValueError):
        raise _foreign_cursor() from None


def _foreign_cursor() -> InvalidInput:
    return InvalidInput(
        [FieldError("query.cursor", "not a cursor this API issued; omit it to start over")]
    )
