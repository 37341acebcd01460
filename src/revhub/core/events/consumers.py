"""Named consumers, what they subscribe to, and applying an event to one exactly once.

A consumer's handler takes the session of a transaction that also records the event as
applied for that consumer; a second delivery of the same event finds the record and does
nothing. Delivery is at-least-once (DESIGN.md §4), the effect exactly-once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from revhub.core.db import Database, insert_rows
from revhub.core.errors import describe_error
from revhub.core.events.envelope import TOPICS, Event, correlated
from revhub.core.events.models import AppliedEvent, DeadLetter
from revhub.core.observability import REGISTRY
from revhub.core.retry import RetryPolicy

Handler = Callable[[Session, Event, str], None]
"""``handle(session, event, topic)``: apply the event inside ``session``'s transaction."""
BatchHandler = Callable[[Session, "list[Received]"], None]
"""``handle_many(session, received)``: apply a batch, in order, inside one transaction."""
Outcome = Literal["applied", "duplicate", "skipped", "dead_lettered"]
Wants = Callable[[str, str], bool]
"""``wants(topic, event_type)``: whether a consumer has anything to do with such an event."""

log = structlog.get_logger("revhub.events")

DELIVERIES = Counter(
    "revhub_event_deliveries",
    "Events handed to consumers, by consumer and outcome.",
    ["consumer", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "revhub_dead_letters",
    "Deliveries moved to the dead-letter store.",
    ["consumer"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "revhub_event_retries", "Retries of a consumer's handler.", ["consumer"], registry=REGISTRY
)


@dataclass(frozen=True)
class Consumer:
    """A consumer group. Without a handler it is registered but does not consume yet, so that
    when its domain lands it starts from the first event instead of having skipped them."""

    name: str
    topics: frozenset[str]
    handle: Handler | None = None
    event_types: frozenset[str] | None = None
    description: str = ""
    handle_many: BatchHandler | None = None
    """Optional: what ``handle`` does to each event of a batch, done for the batch at once
    (one look-up for every event instead of one per event). The batch has no single
    correlation id: what it publishes, it publishes under the id of the event that caused
    it (``envelope.correlated``). ``handle`` still serves replays and the one-by-one path
    after a failed batch."""

    interest: Callable[[Session], Wants] | None = None
    """Optional, for a consumer that fans events out to targets configured at run time (the
    webhook subscriptions, the CRM connections): what those targets want now, read once per
    poll after the events (so a target stored before an event was published is seen). An
    event no target wants is passed over, neither applied nor recorded: with no
    subscription, the webhooks consumer spent two fifths of the consumers' CPU recording
    events it did nothing with. Replays (``apply``) do not ask."""

    def wants(self, event: Event) -> bool:
        return self.wants_type(event.event_type)

    def wanted_now(self, session: Session | None) -> Wants:
        """``wants_type`` narrowed by ``interest`` as read in ``session``: for one poll (a
        consumer without ``interest`` needs no session)."""
        narrowed = None
        if self.interest is not None:
            assert session is not None, f"{self.name} reads its interest in a session"
            narrowed = self.interest(session)

        def wants(topic: str, event_type: str) -> bool:
            return self.wants_type(event_type) and (narrowed is None or narrowed(topic, event_type))

        return wants

    def wants_type(self, event_type: str) -> bool:
        """Asked before an event is parsed: a bus skips what the consumer would not handle."""
        return self.handle is not None and (
            self.event_types is None or event_type in self.event_types
        )


@dataclass
class ConsumerRegistry:
    consumers: dict[str, Consumer] = field(default_factory=dict)

    def register(self, consumer: Consumer) -> Consumer:
        """Add or replace a consumer (a domain replaces a placeholder with its handler)."""
        self.consumers[consumer.name] = consumer
        return consumer

    def active(self) -> list[Consumer]:
        return [c for c in self.consumers.values() if c.handle is not None]

    def get(self, name: str) -> Consumer | None:
        return self.consumers.get(name)


def default_registry() -> ConsumerRegistry:
    """The seed 002 consumers. Domain issues give them handlers; ``webhooks`` has one now."""
    all_topics = frozenset(TOPICS)
    registry = ConsumerRegistry()
    for name, topics, description in (
        ("crm-sync", {"lead-capture", "revenue-attribution"}, "Real-time CRM synchronization"),
        ("analytics-pipeline", all_topics, "Analytics data processing"),
        ("alert-system", all_topics, "Automated alerting"),
        ("reporting-engine", all_topics, "Report generation"),
    ):
        registry.register(Consumer(name, frozenset(topics), description=description))
    return registry


def apply(
    db: Database,
    consumer: Consumer,
    event: Event,
    *,
    policy: RetryPolicy,
    topic: str,
    dead_letter_id: uuid.UUID | None = None,
) -> Outcome:
    """Apply ``event`` to ``consumer`` once, retrying per ``policy``; dead-letter at the end.

    With ``dead_letter_id`` this is a replay, asked for by an admin: the handler runs even if
    the event was applied before (a webhook delivery can die after its consumer applied the
    event), success marks the letter ``replayed`` in the same transaction as the effect, and
    failure puts it back to ``open`` with the new error.
    """
    if consumer.handle is None or not consumer.wants(event):
        return "skipped"
    handle = consumer.handle

    def attempt() -> Outcome:
        with db.transaction() as session:
            seen = session.get(AppliedEvent, (consumer.name, event.event_id)) is not None
            if seen and dead_letter_id is None:
                return "duplicate"
            if not seen and not _mark_applied(session, consumer.name, [event]):
                return "duplicate"
            with correlated(event.metadata.correlation_id):
                handle(session, event, topic)
            if dead_letter_id is not None:
                _settle(session, dead_letter_id, "replayed", None, 0)
        return "applied"

    def count_retry(_state: object) -> None:
        RETRIES.labels(consumer.name).inc()

    try:
        outcome = policy.run(attempt, before_sleep=count_retry)
    except Exception as exc:  # every failure ends in the dead-letter store, not in a crash
        attempts = policy.max_attempts if policy.is_retryable(exc) else 1
        if dead_letter_id is None:
            dead_letter(db, consumer.name, event, topic=topic, error=exc, attempts=attempts)
        else:
            with db.transaction() as session:
                _settle(session, dead_letter_id, "open", describe_error(exc), attempts)
        outcome = "dead_lettered"
    DELIVERIES.labels(consumer.name, outcome).inc()
    return outcome


def _mark_applied(session: Session, consumer: str, events: list[Event]) -> bool:
    """Record the events as applied by ``consumer`` before their effects, in a savepoint:
    False if another worker recorded one first (then nothing here is applied twice). Only
    this insert's IntegrityError means "duplicate"; a handler's own goes to retries."""
    try:
        with session.begin_nested():
            rows = [{"consumer": consumer, "event_id": e.event_id} for e in events]
            insert_rows(session, AppliedEvent, rows)
    except IntegrityError:
        return False
    return True


def _settle(
    session: Session, letter_id: uuid.UUID, status: str, error: str | None, attempts: int
) -> None:
    letter = session.get(DeadLetter, letter_id)
    if letter is not None:
        letter.status = status
        letter.error = error or letter.error
        letter.attempts += attempts


def dead_letter(
    db: Database, consumer: str, event: Event, *, topic: str, error: BaseException, attempts: int
) -> None:
    with db.transaction() as session:
        add_dead_letter(session, consumer, event, topic=topic, error=error, attempts=attempts)


def add_dead_letter(
    session: Session,
    consumer: str,
    event: Event,
    *,
    topic: str,
    error: BaseException,
    attempts: int,
) -> None:
    """Store a delivery that failed its last attempt, in the caller's transaction."""
    log.error(
        "dead_letter", consumer=consumer, event_id=str(event.event_id), error=describe_error(error)
    )
    DEAD_LETTERS.labels(consumer).inc()
    session.add(
        DeadLetter(
            consumer=consumer,
            event_id=event.event_id,
            topic=topic,
            event=event.model_dump(mode="json"),
            error=describe_error(error),
            attempts=attempts,
        )
    )


@dataclass(frozen=True)
class Received:
    """An event as a bus hands it over: with its topic."""

    event: Event
    topic: str


def apply_all(
    db: Database, consumer: Consumer, received: list[Received], *, policy: RetryPolicy
) -> None:
    """Apply a batch to ``consumer`` in one transaction; on any failure, one by one.

    One commit for the batch instead of one per event is what lets a consumer keep up with
    hundreds of events a second. If any handler fails, the whole batch rolls back (no effect
    was kept) and each event goes through :func:`apply`, with its own retries and dead letter.
    """
    wanted = [r for r in received if consumer.wants(r.event)]
    if not wanted:
        return
    try:
        applied = _apply_together(db, consumer, wanted)
    except Exception:  # any failure: fall back to the careful path, event by event
        log.info("batch_fallback", consumer=consumer.name, events=len(wanted))
        for item in wanted:
            apply(db, consumer, item.event, policy=policy, topic=item.topic)
        return
    DELIVERIES.labels(consumer.name, "applied").inc(applied)
    DELIVERIES.labels(consumer.name, "duplicate").inc(len(wanted) - applied)


def _apply_together(db: Database, consumer: Consumer, wanted: list[Received]) -> int:
    assert consumer.handle is not None
    ids = [r.event.event_id for r in wanted]
    with db.transaction() as session:
        seen = set(
            session.scalars(
                select(AppliedEvent.event_id).where(
                    AppliedEvent.consumer == consumer.name, AppliedEvent.event_id.in_(ids)
                )
            )
        )
        fresh = [r for r in wanted if r.event.event_id not in seen]
        if not _mark_applied(session, consumer.name, [r.event for r in fresh]):
            raise _Raced
        if consumer.handle_many is not None:
            consumer.handle_many(session, fresh)
            return len(fresh)
        for item in fresh:
            with correlated(item.event.metadata.correlation_id):
                consumer.handle(session, item.event, item.topic)
    return len(fresh)


class _Raced(Exception):
    """Another worker applied part of the batch first; the careful path sorts it out."""
