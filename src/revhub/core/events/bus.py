"""Two buses behind one small interface; configuration picks one (``REVHUB_BUS``).

* :class:`LocalBus` — the outbox table is the log; each consumer group keeps its offset in
  the database and reads in ``seq`` order, so events of a tenant arrive in order.
* :class:`RedisBus` — a relay moves outbox rows to one Redis stream per topic (tenant in
  each entry); consumer groups read with XREADGROUP and XACK, take over entries a dead
  worker left pending longer than the visibility timeout (XAUTOCLAIM), and streams are
  trimmed only below what every group has acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import redis
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from revhub.core.db import Database, utcnow
from revhub.core.events import outbox
from revhub.core.events.consumers import Consumer, Received, Wants, apply_all
from revhub.core.events.envelope import Event
from revhub.core.events.models import ConsumerOffset, OutboxEvent
from revhub.core.retry import RetryPolicy

log = structlog.get_logger("revhub.bus")
T = TypeVar("T")


CHUNK = 100
"""Events applied in one transaction (see ``consumers.apply_all``)."""


def _never() -> bool:
    return False


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class Bus(Protocol):
    batch_size: int
    """Most events one poll reads (per stream, on Redis)."""

    def poll(
        self,
        consumer: Consumer,
        *,
        policy: RetryPolicy,
        worker_id: str,
        stopping: Callable[[], bool] = _never,
    ) -> int:
        """Deliver what is waiting for ``consumer``; the number of events handled.

        ``stopping`` is asked between events: once it says yes, the rest of the batch is
        left for later (the local offset has not passed it; Redis entries stay pending and
        are reclaimed by another worker after the visibility timeout).
        """
        ...

    def relay(self) -> int:
        """Move committed outbox rows onto the bus; the number moved (0 for the local bus)."""
        ...

    def lag(self, session: Session, consumer: Consumer) -> int:
        """Events on the consumer's topics it has not yet handled (read in ``session``, the
        caller's transaction: on SQLite a second one would wait for the caller's lock)."""
        ...


class LocalBus:
    def __init__(self, db: Database, *, batch_size: int = 500) -> None:
        self.db = db
        self.batch_size = batch_size

    def _start(self, consumer: str) -> None:
        """Give a consumer its offset row, at 0, the first time it polls."""
        with self.db.transaction() as session:
            if session.get(ConsumerOffset, consumer) is None:
                session.add(ConsumerOffset(consumer=consumer, position=0))

    def poll(
        self,
        consumer: Consumer,
        *,
        policy: RetryPolicy,
        worker_id: str = "",
        stopping: Callable[[], bool] = _never,
    ) -> int:
        with self.db.reading() as session:
            position = session.scalar(
                select(ConsumerOffset.position).where(ConsumerOffset.consumer == consumer.name)
            )
            heads = outbox.read_after(
                session, position=position or 0, topics=consumer.topics, limit=self.batch_size
            )
            wants = consumer.wanted_now(session) if heads else None
            wanted = [h.seq for h in heads if wants and wants(h.topic, h.event_type)]
            events = outbox.events_at(session, wanted)
        if position is None:
            self._start(consumer.name)
        if wants is None:
            return 0
        handled = 0
        for chunk in _chunks(heads):
            if stopping():
                break
            received = [
                Received(outbox.to_event(events[h.seq]), h.topic) for h in chunk if h.seq in events
            ]
            apply_all(self.db, consumer, received, policy=policy)
            handled += len(chunk)
        if handled:
            self._advance(consumer.name, heads[handled - 1].seq)
        return handled

    def _advance(self, consumer: str, seq: int) -> None:
        """Once per poll, after its chunks: a worker that dies in between reads the applied
        chunks again, and their applied-event records make it skip them."""
        with self.db.transaction() as session:
            session.execute(
                update(ConsumerOffset)
                .where(ConsumerOffset.consumer == consumer)
                .values(position=seq, updated_at=utcnow())
            )

    def relay(self) -> int:
        return 0

    def lag(self, session: Session, consumer: Consumer) -> int:
        offset = session.get(ConsumerOffset, consumer.name)
        position = offset.position if offset else 0
        return outbox.count_after(session, position=position, topics=consumer.topics)


class RedisBus:
    def __init__(
        self,
        db: Database,
        url: str,
        *,
        topics: Iterable[str],
        batch_size: int = 100,
        block_ms: int = 1000,
        visibility_timeout_ms: int = 30_000,
        prefix: str = "revhub:",
    ) -> None:
        self.db = db
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = f"{prefix}stream:"
        self.topics = sorted(topics)
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.visibility_timeout_ms = visibility_timeout_ms
        self._next_reclaim: dict[str, float] = {}
        """Per consumer: when ``_reclaim`` next asks Redis (``time.monotonic()``)."""
        self._relayed_upto = 0
        """The highest ``seq`` this bus has relayed: see :meth:`relay`."""

    def stream_key(self, topic: str) -> str:
        return self.prefix + topic

    def ensure_groups(self, consumers: Iterable[Consumer]) -> None:
        """Create each group at the start of its streams, so nothing is trimmed before a
        group that has never run has read it."""
        for consumer in consumers:
            for topic in consumer.topics:
                try:
                    self.redis.xgroup_create(
                        self.stream_key(topic), consumer.name, id="0", mkstream=True
                    )
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    def relay(self) -> int:
        """Send the oldest unrelayed events to their streams and mark them relayed. It looks
        only past the last event it relayed: ``seq`` order is commit order, so every event
        before that one was relayed or is in hand, and the index entries of the events
        relayed since the last vacuum are not visited again at each look (the look took
        2 ms after a minute of 200 leads/s). Another relay's events it passes over once."""
        with self.db.transaction() as session:
            rows = outbox.unrelayed(session, limit=self.batch_size, after=self._relayed_upto)
            if not rows:
                return 0
            pipe = self.redis.pipeline(transaction=False)
            for row in rows:
                pipe.xadd(
                    self.stream_key(row.topic),
                    {
                        "tenant": row.tenant_id,
                        "seq": row.seq,
                        "type": row.event_type,
                        "event": outbox.to_event(row).model_dump_json(),
                    },
                )
            pipe.execute()
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.seq.in_([r.seq for r in rows]))
                .values(relayed_at=utcnow())
            )
        self._relayed_upto = rows[-1].seq
        return len(rows)

    def poll(
        self,
        consumer: Consumer,
        *,
        policy: RetryPolicy,
        worker_id: str,
        stopping: Callable[[], bool] = _never,
    ) -> int:
        entries = self._reclaim(consumer, worker_id) or self._read_new(consumer, worker_id)
        if not entries:
            return 0
        wants = self._wanted_now(consumer)
        handled = 0
        for chunk in _chunks(entries):
            if stopping():
                break
            named = [(stream.removeprefix(self.prefix), fields) for stream, _id, fields in chunk]
            received = [
                Received(Event.model_validate_json(fields["event"]), topic)
                for topic, fields in named
                if "type" not in fields or wants(topic, fields["type"])
            ]
            apply_all(self.db, consumer, received, policy=policy)
            for stream in {stream for stream, _id, _f in chunk}:
                self.redis.xack(
                    stream, consumer.name, *[entry_id for s, entry_id, _f in chunk if s == stream]
                )
            handled += len(chunk)
        return handled

    def _wanted_now(self, consumer: Consumer) -> Wants:
        if consumer.interest is None:
            return consumer.wanted_now(None)
        with self.db.reading() as session:
            return consumer.wanted_now(session)

    def _reclaim(self, consumer: Consumer, worker_id: str) -> list[tuple[str, str, dict[str, str]]]:
        """Entries another worker took and did not acknowledge within the visibility timeout.

        No entry can time out sooner than that after it was read, so asking at every poll
        (one XAUTOCLAIM per topic, more calls than the read itself; a tenth of the worker's
        samples in a profile of a bulk import) found nothing almost every time. Once a look
        finds nothing, the next is half a timeout later; while looks find entries, every poll
        looks again."""
        now = time.monotonic()
        if now < self._next_reclaim.get(consumer.name, 0.0):
            return []
        claimed: list[tuple[str, str, dict[str, str]]] = []
        for topic in sorted(consumer.topics):
            stream = self.stream_key(topic)
            _next, entries, *_ = self.redis.xautoclaim(
                stream,
                consumer.name,
                worker_id,
                min_idle_time=self.visibility_timeout_ms,
                start_id="0-0",
                count=self.batch_size,
            )
            claimed += [(stream, entry_id, fields) for entry_id, fields in entries if fields]
        if not claimed:
            self._next_reclaim[consumer.name] = now + self.visibility_timeout_ms / 2000
        return claimed

    def _read_new(
        self, consumer: Consumer, worker_id: str
    ) -> list[tuple[str, str, dict[str, str]]]:
        streams: dict[Any, Any] = {self.stream_key(t): ">" for t in sorted(consumer.topics)}
        response: Any = self.redis.xreadgroup(
            consumer.name, worker_id, streams, count=self.batch_size, block=self.block_ms
        )
        return [
            (stream, entry_id, fields)
            for stream, entries in response or []
            for entry_id, fields in entries
        ]

    def trim(self) -> int:
        """Drop entries every group has acknowledged; unconsumed entries are never dropped."""
        removed = 0
        for topic in self.topics:
            stream = self.stream_key(topic)
            safe = self._oldest_needed(stream)
            if safe is not None:
                removed += int(self.redis.xtrim(stream, minid=safe, approximate=False))
        return removed

    def _oldest_needed(self, stream: str) -> str | None:
        if not self.redis.exists(stream):
            return None
        needed: list[tuple[int, int]] = []
        for group in self.redis.xinfo_groups(stream):
            if group["pending"]:
                summary = self.redis.xpending(stream, group["name"])
                needed.append(_entry_id(summary["min"]))
            else:
                ms, seq = _entry_id(group["last-delivered-id"])
                needed.append((ms, seq + 1))
        if not needed:
            return None
        ms, seq = min(needed)
        return f"{ms}-{seq}"

    def lag(self, session: Session, consumer: Consumer) -> int:
        total = 0
        for topic in consumer.topics:
            if not self.redis.exists(self.stream_key(topic)):
                continue
            for group in self.redis.xinfo_groups(self.stream_key(topic)):
                if group["name"] == consumer.name:
                    total += int(group.get("lag") or 0) + int(group["pending"])
        return total


def _entry_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def make_bus(
    db: Database,
    *,
    kind: str,
    redis_url: str | None,
    topics: Iterable[str],
    visibility_timeout_ms: int = 30_000,
    prefix: str = "revhub:",
) -> Bus:
    if kind == "redis":
        assert redis_url, "REVHUB_BUS=redis needs REVHUB_REDIS_URL"
        return RedisBus(
            db, redis_url, topics=topics, prefix=prefix, visibility_timeout_ms=visibility_timeout_ms
        )
    return LocalBus(db)
