"""The ``webhooks`` consumer and the delivery chore the worker runs."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy.orm import Session

from revhub.core.crypto import SecretBox
from revhub.core.db import Database, utcnow
from revhub.core.events.consumers import Consumer
from revhub.core.events.envelope import TOPICS, Event
from revhub.core.retry import RetryPolicy
from revhub.core.settings import Settings
from revhub.core.webhooks import service

SECRET_PURPOSE = "webhook-secret"  # noqa: S105 (an HKDF label, not a secret)


def secret_box(settings: Settings) -> SecretBox:
    """Seals the subscriptions' signing secrets, with a key derived from the PII secret: the
    previous PII secrets still open the secrets they sealed until ``revhub keys
    rotate-pii`` has sealed them again (without them, a rotation stopped every delivery)."""
    return SecretBox(settings.secrets["pii_key"], SECRET_PURPOSE, settings.pii_previous)


def webhooks_consumer() -> Consumer:
    """Every topic; each event becomes one delivery per subscription that wants it (an event
    no active subscription wants is passed over)."""

    def handle(session: Session, event: Event, topic: str) -> None:
        service.enqueue_deliveries(session, event, topic=topic, now=utcnow())

    return Consumer(
        service.CONSUMER,
        frozenset(TOPICS),
        handle=handle,
        interest=service.subscribers_want,
        description="Outbound webhooks (signed HTTP POSTs)",
    )


def delivery_chore(db: Database, *, box: SecretBox, policy: RetryPolicy) -> Callable[[], int]:
    client = httpx.Client(timeout=httpx.Timeout(10.0), follow_redirects=False)

    def deliver() -> int:
        return service.deliver_due(db, box=box, policy=policy, client=client)

    return deliver
