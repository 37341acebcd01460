"""Dead-letter use cases: list, inspect, replay, discard.

Replaying is asked for in the request's transaction (status ``replaying``) and carried out
by a worker (or at once by the CLI), because the consumer's handler runs in transactions of
its own, retried per its policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.core.db import Database, get_or_404
from revhub.core.errors import Conflict
from revhub.core.events.bus import Bus
from revhub.core.events.consumers import ConsumerRegistry, _settle, apply
from revhub.core.events.envelope import Event
from revhub.core.events.models import DeadLetter
from revhub.core.events.schemas import ConsumerStatus
from revhub.core.pagination import newest_first
from revhub.core.retry import RetryPolicy


class Status(StrEnum):
    OPEN = "open"
    REPLAYING = "replaying"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


def get_dead_letter(session: Session, *, dead_letter_id: uuid.UUID) -> DeadLetter:
    return get_or_404(session, DeadLetter, dead_letter_id, label="dead letter")


def list_dead_letters(
    session: Session,
    *,
    status: Status | None,
    consumer: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[DeadLetter]:
    """Newest first; ``after`` is the id the previous page ended on."""
    query = newest_first(session, DeadLetter, after=after)
    if status is not None:
        query = query.where(DeadLetter.status == status)
    if consumer is not None:
        query = query.where(DeadLetter.consumer == consumer)
    return [*session.scalars(query.limit(limit))]


def request_replay(session: Session, *, dead_letter_id: uuid.UUID) -> DeadLetter:
    letter = get_dead_letter(session, dead_letter_id=dead_letter_id)
    if letter.status not in ("open", "replaying"):
        raise Conflict(f"This dead letter is {letter.status}; only open ones can be replayed.")
    letter.status = "replaying"
    session.flush()
    return letter


def discard(session: Session, *, dead_letter_id: uuid.UUID) -> DeadLetter:
    letter = get_dead_letter(session, dead_letter_id=dead_letter_id)
    if letter.status == "replayed":
        raise Conflict("This dead letter was replayed successfully; there is nothing to discard.")
    letter.status = "discarded"
    session.flush()
    return letter


def replay_requested(
    db: Database,
    *,
    registry: ConsumerRegistry,
    policy_for: Callable[[str], RetryPolicy],
    limit: int = 100,
) -> int:
    """Re-apply every dead letter asked to be replayed; the number that now succeeded.

    A replay that fails again goes back to ``open`` with the new error and attempt count.
    """
    with db.transaction() as session:
        pending = [
            (d.id, d.consumer, d.topic, d.event)
            for d in session.scalars(
                select(DeadLetter).where(DeadLetter.status == "replaying").limit(limit)
            )
        ]
    succeeded = 0
    for letter_id, consumer_name, topic, raw in pending:
        consumer = registry.get(consumer_name)
        if consumer is None or consumer.handle is None:
            with db.transaction() as session:
                _settle(session, letter_id, "open", f"consumer {consumer_name!r} has no handler", 0)
            continue
        outcome = apply(
            db,
            consumer,
            Event.model_validate(raw),
            topic=topic,
            policy=policy_for(consumer_name),
            dead_letter_id=letter_id,
        )
        succeeded += outcome in ("applied", "duplicate")
    return succeeded


def consumer_statuses(
    session: Session, *, consumers: ConsumerRegistry, bus: Bus
) -> list[ConsumerStatus]:
    """Each registered consumer: "active" with its lag, or "no handler yet" (its domain has
    not landed; it will start from the first event when it does)."""
    return [
        ConsumerStatus(
            name=c.name,
            topics=sorted(c.topics),
            description=c.description,
            status="active" if c.handle else "no handler yet",
            lag=bus.lag(session, c) if c.handle else None,
        )
        for c in consumers.consumers.values()
    ]
