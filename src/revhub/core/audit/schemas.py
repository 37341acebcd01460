"""Audit responses."""

from __future__ import annotations

from datetime import datetime

from revhub.core.schemas import ResponseModel


class AuditEntry(ResponseModel):
    seq: int
    occurred_at: datetime
    actor: str
    actor_id: str | None
    role: str | None
    action: str
    resource_type: str
    resource_id: str | None
    request_id: str | None
    outcome: str
    status_code: int | None
    client_ip: str | None
    hash: str


class ChainProblem(ResponseModel):
    seq: int
    problem: str


class ChainVerification(ResponseModel):
    ok: bool
    entries_checked: int
    problems: list[ChainProblem]
