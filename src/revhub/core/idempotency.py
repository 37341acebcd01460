"""``Idempotency-Key`` for writes (DESIGN §3): a client that retries after a timeout gets the
first answer again instead of a second lead, touchpoint or deal.

The key is scoped to the credential and the route. The stored answer is written in the same
transaction as the change, so either both exist or neither does; two requests racing with
one key collide on the primary key and the loser gets a 409 with nothing written.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from revhub.core.db import Base, utcnow
from revhub.core.errors import FieldError, RevHubError

HEADER = "Idempotency-Key"


class IdempotentRequest(Base):
    __tablename__ = "idempotent_request"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    credential_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KeyReused(RevHubError):
    def __init__(self) -> None:
        super().__init__(
            422,
            "idempotency-key-reused",
            "Idempotency key reused",
            f"This {HEADER} was used with a different body on this route. Use a new key "
            "for a new request.",
            [FieldError(f"header.{HEADER}", "already used with a different body")],
        )


@dataclass(frozen=True)
class Scope:
    """Where a key applies: one credential, one route, one body."""

    key: str
    credential_id: uuid.UUID
    route: str
    body_sha256: str

    @classmethod
    def of(cls, key: str, credential_id: uuid.UUID, route: str, body: str) -> Scope:
        digest = hashlib.sha256(body.encode()).hexdigest()
        return cls(key=key, credential_id=credential_id, route=route, body_sha256=digest)


def replay(session: Session, scope: Scope) -> IdempotentRequest | None:
    """The stored answer for this key, or None if it is new; 422 if the body differs."""
    found = session.get(IdempotentRequest, (scope.key, scope.credential_id, scope.route))
    if found is not None and found.body_sha256 != scope.body_sha256:
        raise KeyReused()
    return found


def remember(session: Session, scope: Scope, *, status_code: int, response: Any) -> None:
    session.add(
        IdempotentRequest(
            key=scope.key,
            credential_id=scope.credential_id,
            route=scope.route,
            body_sha256=scope.body_sha256,
            status_code=status_code,
            response=response,
        )
    )
    session.flush()


def idempotent(
    session: Session,
    *,
    key: str | None,
    credential_id: uuid.UUID,
    route: str,
    body: Callable[[], str],
    produce: Callable[[], tuple[BaseModel, int]],
) -> tuple[BaseModel, int] | JSONResponse:
    """Run ``produce`` (which returns the answer and its status) once per key: a retry with
    the same key and body replays the first answer and status (marked
    ``Idempotent-Replayed: true``); without a key it simply runs. ``body`` gives the
    request's fingerprint text, asked for only when there is a key (for a 1,000-item bulk
    request it is a sizeable JSON dump)."""
    if key is None:
        return produce()
    scope = Scope.of(key, credential_id, route, body())
    stored = replay(session, scope)
    if stored is not None:
        return JSONResponse(
            stored.response, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
        )
    answer, status_code = produce()
    remember(session, scope, status_code=status_code, response=answer.model_dump(mode="json"))
    return answer, status_code
