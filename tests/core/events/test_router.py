"""Dead letters and consumers over the admin API and the CLI."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from revhub.core.db import Database
from revhub.core.events import service as events
from revhub.core.events.consumers import Consumer, ConsumerRegistry, dead_letter
from revhub.core.events.envelope import Event
from revhub.core.events.models import DeadLetter
from revhub.core.events.outbox import publish
from revhub.core.retry import RetryPolicy
from tests.eventing import applied

Headers = Callable[[str], dict[str, str]]
NO_RETRY = RetryPolicy(max_attempts=1, base_delay_ms=0)


def _letter(db: Database, consumer: str = "test-effects") -> DeadLetter:
    with db.transaction() as session:
        event = publish(
            session,
            topic="lead-capture",
            event_type="lead.captured",
            tenant_id="acme",
            payload={"n": 1},
        )
    dead_letter(db, consumer, event, topic="lead-capture", error=RuntimeError("boom"), attempts=5)
    with db.transaction() as session:
        return events.list_dead_letters(
            session, status=None, consumer=consumer, after=None, limit=1
        )[0]


def test_admin_lists_and_inspects_dead_letters(
    client: TestClient, db: Database, auth_headers: Headers
) -> None:
    letter = _letter(db)
    admin = auth_headers("admin")
    listed = client.get("/api/v1/dead-letters", headers=admin).json()["items"]
    assert [d["id"] for d in listed] == [str(letter.id)]
    one = client.get(f"/api/v1/dead-letters/{letter.id}", headers=admin).json()
    assert one["error"] == "RuntimeError: boom" and one["attempts"] == 5
    assert one["event"]["tenant_id"] == "acme"
    assert client.get("/api/v1/dead-letters", headers=auth_headers("sales")).status_code == 403


def test_replay_is_requested_then_applied_by_the_worker_chore(
    client: TestClient, db: Database, auth_headers: Headers, effect_consumer: Consumer
) -> None:
    letter = _letter(db)
    answer = client.post(f"/api/v1/dead-letters/{letter.id}/replay", headers=auth_headers("admin"))
    assert answer.status_code == 202 and answer.json()["status"] == "replaying"
    registry = ConsumerRegistry()
    registry.register(effect_consumer)
    assert events.replay_requested(db, registry=registry, policy_for=lambda _: NO_RETRY) == 1
    with db.transaction() as session:
        assert len(applied(session)) == 1
        assert events.get_dead_letter(session, dead_letter_id=letter.id).status == "replayed"
    again = client.post(f"/api/v1/dead-letters/{letter.id}/replay", headers=auth_headers("admin"))
    assert again.status_code == 409


def test_a_replay_that_fails_again_reopens_with_the_new_error(db: Database) -> None:
    letter = _letter(db, "fragile")

    def still_broken(session: Session, event: Event, topic: str) -> None:
        raise RuntimeError("still down")

    registry = ConsumerRegistry()
    registry.register(Consumer("fragile", frozenset({"lead-capture"}), handle=still_broken))
    with db.transaction() as session:
        events.request_replay(session, dead_letter_id=letter.id)
    assert events.replay_requested(db, registry=registry, policy_for=lambda _: NO_RETRY) == 0
    with db.transaction() as session:
        again = events.get_dead_letter(session, dead_letter_id=letter.id)
        assert again.status == "open" and again.attempts == 6 and "still down" in again.error
        assert (
            len(
                events.list_dead_letters(
                    session, status=None, consumer="fragile", after=None, limit=10
                )
            )
            == 1
        )


def test_discard_and_unknown_ids(client: TestClient, db: Database, auth_headers: Headers) -> None:
    letter = _letter(db)
    admin = auth_headers("admin")
    gone = client.post(f"/api/v1/dead-letters/{letter.id}/discard", headers=admin)
    assert gone.json()["status"] == "discarded"
    assert client.get("/api/v1/dead-letters", headers=admin).json()["items"] == []
    missing = client.get("/api/v1/dead-letters/00000000-0000-4000-8000-000000000000", headers=admin)
    assert missing.status_code == 404


def test_consumers_show_which_have_handlers(client: TestClient, auth_headers: Headers) -> None:
    consumers = {
        c["name"]: c
        for c in client.get("/api/v1/events/consumers", headers=auth_headers("admin")).json()
    }
    assert {"crm-sync", "analytics-pipeline", "alert-system", "reporting-engine"} <= set(consumers)
    assert consumers["crm-sync"]["status"] == "active"
    assert "lead-capture" in consumers["crm-sync"]["topics"]
    waiting = [c for c in consumers.values() if c["status"] == "no handler yet"]
    assert waiting, "some consumer's domain has not landed yet"


def test_key_changes_are_published_on_the_platform_topic(
    client: TestClient, db: Database, auth_headers: Headers
) -> None:
    from sqlalchemy import select

    from revhub.core.events.models import OutboxEvent

    admin = auth_headers("admin")
    created = client.post("/api/v1/keys", json={"name": "zap", "role": "sales"}, headers=admin)
    client.delete(
        f"/api/v1/keys/{created.json()['id']}", headers={**admin, "X-Request-ID": "revoke-1"}
    )
    with db.transaction() as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == "platform").order_by(OutboxEvent.seq)
        ).all()
    mine = [r for r in rows if r.payload["key_id"] == created.json()["id"]]
    assert [r.event_type for r in mine] == ["api_key.created", "api_key.revoked"]
    assert mine[1].meta["correlation_id"] == "revoke-1"


def test_metrics_show_backbone_lag(client: TestClient, db: Database, auth_headers: Headers) -> None:
    with db.transaction() as session:
        publish(
            session, topic="lead-capture", event_type="lead.captured", tenant_id="t", payload={}
        )
    text = client.get("/metrics", headers=auth_headers("admin")).text
    assert "revhub_outbox_lag_seconds" in text
    assert 'revhub_consumer_lag_events{consumer="webhooks"}' in text
