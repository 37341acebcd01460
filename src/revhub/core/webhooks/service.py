"""Webhook use cases: subscriptions, turning events into deliveries, sending them signed.

Deliveries keep their retry state in the database (attempts, next attempt time) instead of
sleeping in a worker: a receiver that is down for an hour costs no thread, survives a
restart, and the backoff still follows the retry policy (and the receiver's Retry-After).
Any 2xx is success; 408, 429, 5xx and network errors are retried; any other answer is
final. A delivery that fails for good is dead-lettered; replaying that dead letter sends it
again.

Signature (Stripe-style, documented in the README): header
``RevHub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from prometheus_client import Counter
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from revhub import __version__
from revhub.core.crypto import Resealed, SecretBox
from revhub.core.db import Database, get_or_404, once_per_transaction, utcnow
from revhub.core.events.consumers import Wants, add_dead_letter
from revhub.core.events.envelope import Event
from revhub.core.observability import REGISTRY
from revhub.core.pagination import newest_first
from revhub.core.retry import RetryableError, RetryPolicy
from revhub.core.webhooks.models import WebhookDelivery, WebhookSubscription, wants_event
from revhub.core.webhooks.schemas import SubscriptionCreate

CONSUMER = "webhooks"
ACTIVE_SUBSCRIPTIONS = "revhub.webhooks.active_subscriptions"
CLAIM_FOR = timedelta(seconds=60)
RETRY_STATUSES = frozenset({408, 429})
log = structlog.get_logger("revhub.webhooks")

DELIVERY_ATTEMPTS = Counter(
    "revhub_webhook_attempts",
    "Webhook delivery attempts, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)


def create_subscription(
    session: Session, *, sub_in: SubscriptionCreate, created_by: str, box: SecretBox
) -> tuple[WebhookSubscription, str]:
    """A new subscription and its signing secret (returned here only)."""
    secret = sub_in.secret or "whsec_" + secrets.token_urlsafe(32)
    subscription = WebhookSubscription(
        name=sub_in.name,
        url=str(sub_in.url),
        topics=sub_in.topics,
        event_types=sub_in.event_types,
        sealed_secret=box.seal(secret),
        created_by=created_by,
    )
    session.add(subscription)
    session.flush()
    return subscription, secret


def get_subscription(session: Session, *, subscription_id: uuid.UUID) -> WebhookSubscription:
    return get_or_404(session, WebhookSubscription, subscription_id, label="webhook subscription")


def list_subscriptions(
    session: Session, *, after: uuid.UUID | None, limit: int
) -> list[WebhookSubscription]:
    return [*session.scalars(newest_first(session, WebhookSubscription, after=after).limit(limit))]


def deactivate_subscription(session: Session, *, subscription_id: uuid.UUID) -> WebhookSubscription:
    """Stop sending to it; its deliveries stay visible."""
    subscription = get_subscription(session, subscription_id=subscription_id)
    subscription.active = False
    session.flush()
    return subscription


def get_delivery(session: Session, *, delivery_id: uuid.UUID) -> WebhookDelivery:
    return get_or_404(session, WebhookDelivery, delivery_id, label="webhook delivery")


def list_deliveries(
    session: Session,
    *,
    subscription_id: uuid.UUID,
    status: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[WebhookDelivery]:
    get_subscription(session, subscription_id=subscription_id)
    query = newest_first(session, WebhookDelivery, after=after).where(
        WebhookDelivery.subscription_id == subscription_id
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return [*session.scalars(query.limit(limit))]


_READ_ACTIVE_SUBSCRIPTIONS = select(WebhookSubscription).where(WebhookSubscription.active.is_(True))
"""Built once: building the statement for every event cost more than the rest of the
consumer's handler."""


def _active_subscriptions(session: Session) -> list[WebhookSubscription]:
    """Read once per transaction: the consumer applies a batch of hundreds of events in
    one, and the subscriptions cannot change under it."""
    return once_per_transaction(
        session, ACTIVE_SUBSCRIPTIONS, lambda: [*session.scalars(_READ_ACTIVE_SUBSCRIPTIONS)]
    )


def subscribers_want(session: Session) -> Wants:
    """The ``webhooks`` consumer's interest: what the active subscriptions want now (nothing
    at all while there are none)."""
    wanted = [
        (frozenset(sub.topics), frozenset(sub.event_types or ()))
        for sub in session.scalars(_READ_ACTIVE_SUBSCRIPTIONS)
    ]

    def wants(topic: str, event_type: str) -> bool:
        return any(wants_event(topics, types, topic, event_type) for topics, types in wanted)

    return wants


def enqueue_deliveries(session: Session, event: Event, *, topic: str, now: datetime) -> int:
    """One pending delivery per active subscription that wants the event.

    Runs as the ``webhooks`` consumer's handler, so it happens once per event; applied again
    (a dead-letter replay) it re-queues the deliveries that died and leaves the rest.
    """
    queued = 0
    for subscription in _active_subscriptions(session):
        if not subscription.wants(topic, event.event_type):
            continue
        delivery = session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == subscription.id,
                WebhookDelivery.event_id == event.event_id,
            )
        ).first()
        if delivery is None:
            session.add(
                WebhookDelivery(
                    subscription_id=subscription.id,
                    event_id=event.event_id,
                    event_type=event.event_type,
                    topic=topic,
                    event=event.model_dump(mode="json"),
                    next_attempt_at=now,
                )
            )
            queued += 1
        elif delivery.status == "dead":
            delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, now
            queued += 1
    session.flush()
    return queued


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``RevHub-Signature`` value: ``t=<timestamp>,v1=<hex hmac>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    retry_after: float | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code >= 500 or code in RETRY_STATUSES


def deliver_due(
    db: Database,
    *,
    box: SecretBox,
    policy: RetryPolicy,
    client: httpx.Client,
    now: datetime | None = None,
    limit: int = 50,
) -> int:
    """Send deliveries that are due, once each across workers; the number attempted.

    One claim at a time, on the clock of that moment (``now`` fixes the clock, for tests):
    a claim lasts ``CLAIM_FOR``, far longer than one POST may take, so no other worker can
    take a delivery while it is in flight.
    """
    attempted = 0
    while attempted < limit:
        moment = now or utcnow()
        claimed = _claim_due(db, now=moment, limit=1)
        if not claimed:
            break
        _attempt(db, claimed[0], box=box, policy=policy, client=client, now=moment)
        attempted += 1
    return len(claimed)


def _claim_due(db: Database, *, now: datetime, limit: int) -> list[uuid.UUID]:
    """Claim due deliveries for ``CLAIM_FOR``: the conditional update lets one worker win."""
    claimed: list[uuid.UUID] = []
    with db.transaction() as session:
        due = session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        ).all()
        for delivery_id in due:
            won = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    or_(
                        WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now
                    ),
                )
                .values(claimed_until=now + CLAIM_FOR)
            ).rowcount  # type: ignore[attr-defined]
            if won:
                claimed.append(delivery_id)
    return claimed


def _attempt(
    db: Database,
    delivery_id: uuid.UUID,
    *,
    box: SecretBox,
    policy: RetryPolicy,
    client: httpx.Client,
    now: datetime,
) -> None:
    with db.transaction() as session:
        delivery = get_delivery(session, delivery_id=delivery_id)
        subscription = get_subscription(session, subscription_id=delivery.subscription_id)
        url, secret = subscription.url, box.open(subscription.sealed_secret)
        event, attempt_no = Event.model_validate(delivery.event), delivery.attempts + 1
    attempt = _post(client, url, secret, event, delivery_id, attempt_no)
    DELIVERY_ATTEMPTS.labels("succeeded" if attempt.succeeded else "failed").inc()
    with db.transaction() as session:
        delivery = get_delivery(session, delivery_id=delivery_id)
        _record(delivery, attempt, policy=policy, now=now)
        if delivery.status == "dead":
            error = RetryableError(attempt.error or f"HTTP {attempt.status_code}")
            add_dead_letter(
                session,
                CONSUMER,
                event,
                topic=delivery.topic,
                error=error,
                attempts=delivery.attempts,
            )


def _post(
    client: httpx.Client,
    url: str,
    secret: str,
    event: Event,
    delivery_id: uuid.UUID,
    attempt_no: int,
) -> Attempt:
    body = event.model_dump_json().encode()
    timestamp = int(datetime.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"RevHub-Webhooks/{__version__}",
        "RevHub-Signature": signature(secret, timestamp, body),
        "RevHub-Event-Id": str(event.event_id),
        "RevHub-Event-Type": event.event_type,
        "RevHub-Delivery-Id": str(delivery_id),
        "RevHub-Delivery-Attempt": str(attempt_no),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}", None)
    retry_after = response.headers.get("retry-after")
    return Attempt(
        response.status_code,
        None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}",
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def _record(
    delivery: WebhookDelivery, attempt: Attempt, *, policy: RetryPolicy, now: datetime
) -> None:
    delivery.attempts += 1
    delivery.claimed_until = None
    delivery.last_status_code = attempt.status_code
    delivery.last_error = attempt.error
    if attempt.succeeded:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "succeeded", now, None
        return
    if attempt.retryable and delivery.attempts < policy.max_attempts:
        wait = policy.wait_seconds(delivery.attempts, attempt.retry_after)
        delivery.next_attempt_at = now + timedelta(seconds=wait)
        return
    delivery.status, delivery.next_attempt_at = "dead", None
    log.warning("webhook_dead", delivery_id=str(delivery.id), error=attempt.error)


def reseal_secrets(session: Session, box: SecretBox, report: Resealed) -> None:
    """After a PII key rotation: each subscription's signing secret sealed with the current
    key (``revhub keys rotate-pii``)."""
    for subscription in session.scalars(select(WebhookSubscription)):
        where = f"webhook subscription {subscription.id}"
        subscription.sealed_secret = report.token(box, where, subscription.sealed_secret)
