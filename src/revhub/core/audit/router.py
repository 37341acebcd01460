"""Admin endpoints over the audit trail: page through it, verify the chain."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from revhub.core.audit import schemas
from revhub.core.audit import service as audit
from revhub.core.auth.scopes import ADMIN
from revhub.core.http import DbSession, hub_of, require
from revhub.core.pagination import MAX_LIMIT, cursor_field, encode_cursor, position
from revhub.core.responses import PROTECTED
from revhub.core.schemas import Page

router = APIRouter(
    prefix="/api/v1/audit", tags=["audit"], responses=PROTECTED, dependencies=[require(ADMIN)]
)


@router.get("", response_model=Page[schemas.AuditEntry])
def list_audit_entries(
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Literal["success", "denied", "failed"] | None = None,
) -> Page[schemas.AuditEntry]:
    """Audit entries, newest first."""
    before = cursor_field(cursor, "seq", position)
    entries = audit.list_entries(
        session, before_seq=before, limit=limit, actor=actor, outcome=outcome
    )
    next_cursor = encode_cursor({"seq": entries[-1].seq}) if len(entries) == limit else None
    return Page(
        items=[schemas.AuditEntry.model_validate(e) for e in entries], next_cursor=next_cursor
    )


@router.get("/verify", response_model=schemas.ChainVerification)
def verify_audit_chain(session: DbSession, request: Request) -> schemas.ChainVerification:
    """Recompute the chain; ``ok`` is false and ``problems`` lists each break if it was altered."""
    return audit.verify(session, key=hub_of(request).settings.secrets["audit_key"])
