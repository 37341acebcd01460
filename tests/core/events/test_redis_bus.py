"""What only the Redis Streams bus does: reclaiming a dead worker's entries, trimming."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from revhub.core.db import Database
from revhub.core.events.bus import RedisBus
from revhub.core.events.consumers import Consumer, ConsumerRegistry
from revhub.core.events.envelope import TOPICS
from revhub.core.events.worker import Worker
from revhub.migrations import upgrade
from tests.eventing import FAST, applied, publish_leads


@pytest.fixture
def redis_bus(db: Database, redis_url: str) -> Iterator[RedisBus]:
    prefix = f"revhub-test-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(
        db, redis_url, topics=TOPICS, block_ms=20, visibility_timeout_ms=200, prefix=prefix
    )
    yield bus
    for key in bus.redis.scan_iter(f"{prefix}*"):
        bus.redis.delete(key)


def test_entries_a_dead_worker_left_pending_are_reclaimed(
    db: Database, redis_bus: RedisBus, effect_consumer: Consumer
) -> None:
    redis_bus.ensure_groups([effect_consumer])
    publish_leads(db, 3)
    assert redis_bus.relay() == 3
    stream = redis_bus.stream_key("lead-capture")
    taken = redis_bus.redis.xreadgroup(
        effect_consumer.name, "worker-that-dies", {stream: ">"}, count=10
    )
    assert len(taken[0][1]) == 3
    assert redis_bus.poll(effect_consumer, policy=FAST, worker_id="survivor") == 0
    time.sleep(0.25)
    assert redis_bus.poll(effect_consumer, policy=FAST, worker_id="survivor") == 3
    with db.transaction() as session:
        assert len(applied(session)) == 3
    assert redis_bus.redis.xpending(stream, effect_consumer.name)["pending"] == 0


def test_trimming_never_drops_what_a_group_has_not_acknowledged(
    db: Database, redis_bus: RedisBus, effect_consumer: Consumer
) -> None:
    slow = Consumer("slow-reader", frozenset({"lead-capture"}), handle=effect_consumer.handle)
    redis_bus.ensure_groups([effect_consumer, slow])
    publish_leads(db, 5)
    redis_bus.relay()
    stream = redis_bus.stream_key("lead-capture")
    while redis_bus.poll(effect_consumer, policy=FAST, worker_id="w"):
        pass
    assert redis_bus.trim() == 0
    assert redis_bus.redis.xlen(stream) == 5
    redis_bus.redis.xreadgroup("slow-reader", "w", {stream: ">"}, count=2)
    assert redis_bus.trim() == 0
    while redis_bus.poll(slow, policy=FAST, worker_id="w"):
        pass
    assert redis_bus.trim() == 0, "two entries are still pending with the slow reader"
    time.sleep(0.25)
    while redis_bus.poll(slow, policy=FAST, worker_id="w"):
        pass
    assert redis_bus.trim() == 5
    assert redis_bus.redis.xlen(stream) == 0


def test_relaying_marks_rows_and_is_not_repeated(db: Database, redis_bus: RedisBus) -> None:
    publish_leads(db, 4)
    assert redis_bus.relay() == 4
    assert redis_bus.relay() == 0
    assert redis_bus.redis.xlen(redis_bus.stream_key("lead-capture")) == 4


def test_relays_side_by_side_send_each_event_once_and_lose_none(
    db: Database, redis_bus: RedisBus, redis_url: str
) -> None:
    """A relay looks only past the last event it relayed: events another worker's relay
    sent meanwhile are passed over, and what is published later is still found."""
    prefix = redis_bus.prefix.removesuffix("stream:")
    other = RedisBus(db, redis_url, topics=TOPICS, prefix=prefix)
    publish_leads(db, 3)
    assert redis_bus.relay() == 3
    publish_leads(db, 2)
    assert other.relay() == 2
    publish_leads(db, 1)
    assert redis_bus.relay() == 1
    assert other.relay() == 0
    sent = redis_bus.redis.xrange(redis_bus.stream_key("lead-capture"))
    seqs = [int(fields["seq"]) for _, fields in sent]
    assert len(seqs) == len(set(seqs)) == 6


def test_the_relay_renews_its_lease_when_half_of_it_has_run_not_before_every_batch(
    scratch_database_url: str, redis_bus: RedisBus, redis_url: str
) -> None:
    """Events committed one after another are relayed in batches of their own by a real
    worker; the lease is taken once (a renewal is a transaction and a flush to disk), and
    every event still reaches its stream. (A database of its own: the worker's threads
    commit.)"""
    upgrade(scratch_database_url)
    db = Database.from_url(scratch_database_url)
    bus = RedisBus(db, redis_url, topics=TOPICS, prefix=redis_bus.prefix.removesuffix("stream:"))
    renewals: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.startswith("UPDATE lease"):
            renewals.append(statement)

    worker = Worker(db, bus, ConsumerRegistry(), policy_for=lambda _name: FAST)
    stop = threading.Event()
    stream = bus.stream_key("lead-capture")
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        worker.start(stop)
        for _ in range(5):
            publish_leads(db, 2)
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while bus.redis.xlen(stream) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        taken = len(renewals)
    finally:
        stop.set()
        worker.join(10)
        event.remove(db.engine, "before_cursor_execute", note)
        db.engine.dispose()
    assert bus.redis.xlen(stream) == 10
    assert taken == 1


def _autoclaims(bus: RedisBus) -> int:
    stats = bus.redis.info("commandstats")
    return int(stats.get("cmdstat_xautoclaim", {}).get("calls", 0))


def test_a_look_for_timed_out_entries_that_finds_none_is_not_repeated_within_half_a_timeout(
    db: Database, redis_url: str, effect_consumer: Consumer
) -> None:
    prefix = f"revhub-test-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(
        db, redis_url, topics=TOPICS, block_ms=1, visibility_timeout_ms=2000, prefix=prefix
    )
    bus.ensure_groups([effect_consumer])
    looks = len(effect_consumer.topics)
    before = _autoclaims(bus)
    for _ in range(3):  # each poll waits Redis's 0.1 s tick for new entries
        bus.poll(effect_consumer, policy=FAST, worker_id="w")
    assert _autoclaims(bus) - before == looks
    time.sleep(1.0)
    bus.poll(effect_consumer, policy=FAST, worker_id="w")
    assert _autoclaims(bus) - before == 2 * looks
    for key in bus.redis.scan_iter(f"{prefix}*"):
        bus.redis.delete(key)
