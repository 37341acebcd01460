"""The worker loop: relay, consumers and periodic chores, each on its own thread.

``revhub worker`` runs it in the foreground; ``revhub serve`` in embedded mode runs it beside
the API. Stopping (SIGTERM) lets every loop finish the event in hand and return; an event
cut off mid-way by a crash is delivered again and skipped by the consumer's applied-event
record, so nothing is lost or applied twice.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from revhub.core import leases
from revhub.core.db import Database
from revhub.core.events import outbox
from revhub.core.events.bus import Bus, RedisBus
from revhub.core.events.consumers import Consumer, ConsumerRegistry
from revhub.core.retry import RetryPolicy

log = structlog.get_logger("revhub.worker")

RELAY_LEASE = "outbox-relay"
RELAY_LEASE_TTL = timedelta(seconds=10)
"""How long the relay's lease lasts. The relay renews it once half of it has run, not
before every batch: each renewal is a transaction, and on PostgreSQL a flush to disk, and
at 200 leads/s renewing before every batch was some two fifths of the relay's time waiting
for the database. A batch (one look-up, one Redis pipeline, one update: milliseconds)
starts with at least half the lease left; to outlive it, it would have to hang for five
seconds, where before it had ten."""
IDLE_WAIT_SECONDS = 0.05
"""The relay's pause when nothing was waiting; and a consumer's after a poll that found
events without filling a batch: under a steady trickle (single leads, each publishing a
few events) a consumer that read again at once spent its time on each poll's transactions
for two or three events. Pausing lets events gather into one batch, and delays none by
more than this."""
QUIET_WAIT_SECONDS = 0.5
"""A consumer on the local bus that found nothing polls again after this, or as soon as
this process commits an event (``outbox.NEWS``): events committed by another process wait
at most this long."""
ERROR_WAIT_SECONDS = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Worker:
    db: Database
    bus: Bus
    registry: ConsumerRegistry
    policy_for: Callable[[str], RetryPolicy]
    name: str = field(default_factory=worker_name)
    chores: list[tuple[str, float, Callable[[], object]]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, stop: threading.Event) -> None:
        if isinstance(self.bus, RedisBus):
            self.bus.ensure_groups(self.registry.consumers.values())
            self._spawn("relay", self._relay_loop, stop)
            self.chores.append(("trim", 10.0, self.bus.trim))
        for consumer in self.registry.active():
            self._spawn(f"consumer:{consumer.name}", self._consumer_loop, stop, consumer)
        for name, every, chore in self.chores:
            self._spawn(f"chore:{name}", self._chore_loop, stop, every, chore)
        log.info("worker_started", worker=self.name, threads=[t.name for t in self._threads])

    def join(self, timeout: float | None = None) -> None:
        outbox.NEWS.arrived()  # wakes the consumers waiting for news, to see ``stop``
        for thread in self._threads:
            thread.join(timeout)
        leases.release(self.db, name=RELAY_LEASE, holder=self.name)
        log.info("worker_stopped", worker=self.name)

    def run(self, stop: threading.Event) -> None:
        """Start, block until ``stop`` is set, then wait for every loop to finish."""
        self.start(stop)
        stop.wait()
        self.join()

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _relay_loop(self, stop: threading.Event) -> None:
        held_until = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() > held_until - RELAY_LEASE_TTL.total_seconds() / 2:
                    asked = time.monotonic()
                    if not leases.acquire(
                        self.db, name=RELAY_LEASE, holder=self.name, ttl=RELAY_LEASE_TTL
                    ):
                        stop.wait(2.0)
                        continue
                    held_until = asked + RELAY_LEASE_TTL.total_seconds()
                moved = self.bus.relay()
                if not moved:
                    stop.wait(IDLE_WAIT_SECONDS)
            except Exception:  # a loop must survive a bad moment of the database or Redis
                log.exception("relay_error")
                stop.wait(ERROR_WAIT_SECONDS)

    def _consumer_loop(self, stop: threading.Event, consumer: Consumer) -> None:
        policy = self.policy_for(consumer.name)
        while not stop.is_set():
            try:
                seen = outbox.NEWS.generation
                handled = self.bus.poll(
                    consumer, policy=policy, worker_id=self.name, stopping=stop.is_set
                )
                if handled >= self.bus.batch_size:
                    continue  # a backlog: read on at once
                if handled:
                    stop.wait(IDLE_WAIT_SECONDS)
                elif not isinstance(self.bus, RedisBus):  # (XREADGROUP blocked already)
                    outbox.NEWS.wait_past(seen, QUIET_WAIT_SECONDS)
            except Exception:  # as above: log, wait, go on
                log.exception("consumer_error", consumer=consumer.name)
                stop.wait(ERROR_WAIT_SECONDS)

    def _chore_loop(self, stop: threading.Event, every: float, chore: Callable[[], object]) -> None:
        while not stop.wait(every):
            try:
                chore()
            except Exception:  # as above
                log.exception("chore_error")
