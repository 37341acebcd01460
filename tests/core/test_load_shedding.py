"""An overloaded hub drops requests that waited too long for a database slot, unstarted,
instead of working on answers their clients have given up on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from revhub.api import create_app
from revhub.core.audit.models import AuditEntry
from revhub.core.db import Database
from revhub.core.observability import REGISTRY
from revhub.core.settings import Settings


def test_a_request_that_waited_too_long_is_shed_unstarted(
    settings: Settings,
    db: Database,
    session: Session,
    auth_headers: Callable[[str], dict[str, str]],
) -> None:
    headers = auth_headers("sales")
    impatient = create_app(
        settings.model_copy(update={"shed_after_seconds": 1e-9}), db=db, check_schema=False
    )
    audited = session.scalar(select(func.count()).select_from(AuditEntry))
    shed = REGISTRY.get_sample_value("revhub_shed_total") or 0
    lead = {"email": "a@b.example", "first_name": "A", "company": "B"}
    with TestClient(impatient) as client:
        answer = client.post("/api/v1/integrations/sales/leads", json=lead, headers=headers)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["type"].endswith("/overloaded")
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == audited
    assert REGISTRY.get_sample_value("revhub_shed_total") == shed + 1


def test_a_patient_hub_serves_the_same_request(
    client: TestClient, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    lead = {"email": "a@b.example", "first_name": "A", "company": "B"}
    answer = client.post(
        "/api/v1/integrations/sales/leads", json=lead, headers=auth_headers("sales")
    )
    assert answer.status_code == 201


@pytest.mark.parametrize(("path", "second_status"), [("/x", 503), ("/metrics", 200)])
def test_requests_past_the_in_flight_limit_get_503_at_once(path: str, second_status: int) -> None:
    """Except the probes and /metrics, which an operator needs most when the hub is busy."""
    import asyncio

    from starlette.types import Message, Receive, Scope, Send

    from revhub.core.observability import RequestContext

    release = asyncio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    edge = RequestContext(slow_app, max_body_bytes=1024, max_in_flight=1)

    async def call(path: str) -> list[Message]:
        sent: list[Message] = []
        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "state": {}}

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await edge(scope, receive, send)
        return sent

    async def scenario() -> tuple[list[Message], list[Message]]:
        first = asyncio.create_task(call("/x"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(call(path))
        await asyncio.sleep(0.01)
        release.set()
        return await first, await second

    first, second = asyncio.run(scenario())
    assert first[0]["status"] == 200
    assert second[0]["status"] == second_status
    if second_status == 503:
        headers = dict(second[0]["headers"])
        assert headers[b"content-type"] == b"application/problem+json"
        assert headers[b"retry-after"] == b"1"
    assert edge.in_flight == 0
