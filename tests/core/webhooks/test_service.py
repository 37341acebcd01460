"""Webhook deliveries: signed, retried per the policy, dead-lettered, once per event."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.core.crypto import SecretBox
from revhub.core.db import Database, utcnow
from revhub.core.events.bus import Bus
from revhub.core.events.consumers import ConsumerRegistry
from revhub.core.events.models import AppliedEvent, DeadLetter
from revhub.core.events.outbox import publish
from revhub.core.events.service import replay_requested, request_replay
from revhub.core.retry import RetryPolicy
from revhub.core.webhooks import service as webhooks
from revhub.core.webhooks.jobs import webhooks_consumer
from revhub.core.webhooks.models import WebhookDelivery
from revhub.core.webhooks.schemas import SubscriptionCreate
from tests.core.webhooks.conftest import Receiver
from tests.eventing import deliver_all

BOX = SecretBox(b"k" * 32, "webhook-secret")
POLICY = RetryPolicy(max_attempts=4, base_delay_ms=1000, max_delay_ms=60_000)
SECRET = "whsec_test_secret_0123456789"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def _subscribe(db: Database, url: str, **extra: object) -> None:
    with db.transaction() as session:
        body = SubscriptionCreate.model_validate(
            {"name": "slack", "url": url, "topics": ["lead-capture"], "secret": SECRET, **extra},
            strict=False,
        )
        webhooks.create_subscription(session, sub_in=body, created_by="tests", box=BOX)


def _publish(db: Database, event_type: str = "lead.mql") -> str:
    with db.transaction() as session:
        event = publish(
            session,
            topic="lead-capture",
            event_type=event_type,
            tenant_id="acme.com",
            payload={"email": "ada@acme.com"},
        )
    return str(event.event_id)


def _deliveries(session: Session) -> list[WebhookDelivery]:
    return [*session.scalars(select(WebhookDelivery))]


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does with the README's recipe."""
    parts = dict(p.split("=", 1) for p in headers["RevHub-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


def test_a_receiver_that_fails_twice_gets_the_event_once_signed(
    db: Database, bus: Bus, receiver: Receiver, http: httpx.Client
) -> None:
    _subscribe(db, receiver.url)
    event_id = _publish(db)
    deliver_all(bus, webhooks_consumer())
    receiver.script = [500, 503]
    now = utcnow()
    for minutes in (0, 1, 2, 3):
        webhooks.deliver_due(
            db, box=BOX, policy=POLICY, client=http, now=now + timedelta(minutes=minutes)
        )
    assert len(receiver.requests) == 3
    delivered = receiver.requests[-1]
    assert json.loads(delivered.body)["event_id"] == event_id
    assert all(_verify(SECRET, r.headers, r.body) for r in receiver.requests)
    assert not _verify("wrong-secret", delivered.headers, delivered.body)
    assert {r.headers["RevHub-Delivery-Id"] for r in receiver.requests} == {
        delivered.headers["RevHub-Delivery-Id"]
    }
    assert [r.headers["RevHub-Delivery-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    with db.transaction() as session:
        (delivery,) = _deliveries(session)
        assert delivery.status == "succeeded" and delivery.attempts == 3
        assert delivery.last_status_code == 200 and delivery.delivered_at is not None


def test_backoff_follows_the_policy_and_retry_after(
    db: Database, bus: Bus, receiver: Receiver, http: httpx.Client
) -> None:
    _subscribe(db, receiver.url)
    _publish(db)
    deliver_all(bus, webhooks_consumer())
    receiver.script = [500, 429]
    now = utcnow()
    webhooks.deliver_due(db, box=BOX, policy=POLICY, client=http, now=now)
    with db.transaction() as session:
        first_retry = _deliveries(session)[0].next_attempt_at
    assert first_retry == now + timedelta(seconds=1)
    assert webhooks.deliver_due(db, box=BOX, policy=POLICY, client=http, now=now) == 0
    receiver.extra_headers = {"Retry-After": "45"}
    webhooks.deliver_due(db, box=BOX, policy=POLICY, client=http, now=first_retry)
    with db.transaction() as session:
        assert _deliveries(session)[0].next_attempt_at == first_retry + timedelta(seconds=45)


def test_after_the_last_attempt_it_is_dead_lettered_and_replay_sends_again(
    db: Database, bus: Bus, receiver: Receiver, http: httpx.Client
) -> None:
    _subscribe(db, receiver.url)
    _publish(db)
    consumer = webhooks_consumer()
    deliver_all(bus, consumer)
    receiver.script = [500] * 4
    now = utcnow()
    for minutes in range(6):
        webhooks.deliver_due(
            db, box=BOX, policy=POLICY, client=http, now=now + timedelta(minutes=minutes)
        )
    assert len(receiver.requests) == 4
    with db.transaction() as session:
        (delivery,) = _deliveries(session)
        assert delivery.status == "dead" and delivery.last_status_code == 500
        (letter,) = session.scalars(select(DeadLetter).where(DeadLetter.consumer == "webhooks"))
        request_replay(session, dead_letter_id=letter.id)
    registry = ConsumerRegistry()
    registry.register(consumer)
    assert replay_requested(db, registry=registry, policy_for=lambda _: POLICY) == 1
    webhooks.deliver_due(db, box=BOX, policy=POLICY, client=http, now=now + timedelta(hours=1))
    assert len(receiver.requests) == 5
    with db.transaction() as session:
        assert _deliveries(session)[0].status == "succeeded"


def test_a_client_error_is_final_at_once(
    db: Database, bus: Bus, receiver: Receiver, http: httpx.Client
) -> None:
    _subscribe(db, receiver.url)
    _publish(db)
    deliver_all(bus, webhooks_consumer())
    receiver.script = [410]
    webhooks.deliver_due(db, box=BOX, policy=POLICY, client=http, now=utcnow())
    with db.transaction() as session:
        assert _deliveries(session)[0].status == "dead"


def test_only_wanted_event_types_and_active_subscriptions_get_deliveries(
    db: Database, bus: Bus, receiver: Receiver
) -> None:
    _subscribe(db, receiver.url, event_types=["lead.mql"])
    _publish(db, "lead.mql")
    _publish(db, "lead.scored")
    deliver_all(bus, webhooks_consumer())
    with db.transaction() as session:
        assert [d.event_type for d in _deliveries(session)] == ["lead.mql"]


def _recorded(session: Session) -> set[str]:
    """Events the webhooks consumer recorded as applied."""
    rows = session.scalars(
        select(AppliedEvent.event_id).where(AppliedEvent.consumer == webhooks.CONSUMER)
    )
    return {str(event_id) for event_id in rows}


def test_events_no_subscription_wants_are_passed_over_unrecorded(
    db: Database, bus: Bus, receiver: Receiver
) -> None:
    _publish(db, "lead.mql")
    _publish(db, "lead.scored")
    assert deliver_all(bus, webhooks_consumer()) == 2
    _subscribe(db, receiver.url, event_types=["lead.mql"])
    wanted = _publish(db, "lead.mql")
    _publish(db, "lead.scored")
    assert deliver_all(bus, webhooks_consumer()) == 2
    with db.transaction() as session:
        assert _recorded(session) == {wanted}
        assert [str(d.event_id) for d in _deliveries(session)] == [wanted]


def test_a_subscription_made_before_the_poll_gets_events_published_before_it(
    db: Database, bus: Bus, receiver: Receiver
) -> None:
    """What a poll passes over is decided when it reads the subscriptions, after the events:
    nothing published while a subscription exists is missed."""
    event_id = _publish(db)
    _subscribe(db, receiver.url)
    deliver_all(bus, webhooks_consumer())
    with db.transaction() as session:
        assert [str(d.event_id) for d in _deliveries(session)] == [event_id]


def test_a_second_worker_cannot_claim_what_the_first_holds(
    db: Database, bus: Bus, receiver: Receiver
) -> None:
    _subscribe(db, receiver.url)
    _publish(db)
    deliver_all(bus, webhooks_consumer())
    now = utcnow()
    assert len(webhooks._claim_due(db, now=now, limit=10)) == 1
    assert webhooks._claim_due(db, now=now, limit=10) == []
    assert len(webhooks._claim_due(db, now=now + timedelta(minutes=2), limit=10)) == 1


def test_the_secret_is_stored_sealed(db: Database, receiver: Receiver) -> None:
    _subscribe(db, receiver.url)
    with db.transaction() as session:
        (sub,) = webhooks.list_subscriptions(session, after=None, limit=10)
        assert SECRET not in sub.sealed_secret
        assert BOX.open(sub.sealed_secret) == SECRET
