"""Single leads that arrive together are captured together (group commit).

A lead captured alone costs about 6 ms of the hub's CPU, most of it fixed per batch: the
look-ups of ``intake.Intake``, one INSERT per table, the commit. Four leads in one batch
cost about 3 ms each (``bench/service_cost.py``, ``leads by 1`` and ``by 4``). So
concurrent ``POST …/sales/leads`` requests queue here; the queue's thread takes everything
queued and has it captured in one transaction with each request's audit entry (by the
capture process, see ``capture_process``, or in the thread itself), while the requests
await their answers. When that batch is done it takes what queued meanwhile. A quiet hub
runs batches of one, so nothing waits for a timer; a busy one batches as much as arrived
while the last batch ran.

Each lead still gets its own answer: a refused lead is its own 422 (the batch goes on
without it), and a batch that fails as a whole (a twin request won a unique key twice, a
bug) is run again one lead at a time, so only the lead that fails alone fails. Each
lead's events carry its own request's correlation id, not that of the thread that
captured it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

from revhub.contacts.pii import Pii, pii_for
from revhub.core.audit import service as audit
from revhub.core.db import Database
from revhub.core.errors import Overloaded, RevHubError
from revhub.core.events.envelope import current_correlation_id
from revhub.core.http import Hub
from revhub.core.observability import REGISTRY, SHED
from revhub.sales import schemas as s
from revhub.sales.capture_process import STOPPED, CaptureProcess, Job, Outcome, capture_jobs

BATCH_SIZES = Histogram(
    "revhub_lead_capture_batch_size",
    "Single-lead captures committed together, per transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "revhub_lead_capture_batch_seconds",
    "Time to capture a batch of single leads: the six steps of each, its commit, and the "
    "trip to the capture process and back. A lead waits for the batch in hand and then "
    "its own, so a lead's latency is up to about twice this.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
MAX_BATCH = 100
"""Leads per transaction; at about 2 ms a lead a full batch holds SQLite's write lock for
a fifth of a second."""


def _interrupted() -> RevHubError:
    return RevHubError(
        503,
        "capture-interrupted",
        "Capture interrupted",
        "The hub stopped capturing before this lead was stored (it is shutting down); send "
        "it again.",
        headers={"Retry-After": "1"},
    )


@dataclass(eq=False)
class _Ticket:
    lead_in: s.LeadCreate
    audit: audit.AuditEvent
    correlation_id: str | None
    arrived: float
    answer: Future[s.LeadResult] = field(default_factory=Future)


class CaptureQueue:
    """One per app (see :func:`queue_of`): the leads waiting to be captured, and the thread
    that captures them.

    One thread of its own does the work, so a waiting request holds no thread: an ``async``
    route awaits its ticket (:meth:`submit`), and a batch can take every lead that arrived
    while the last one ran, not only as many as there were threads to wait in (at 200
    leads/s offered the threads that waited here were the whole pool, and requests queued
    for a thread before they could queue for the database)."""

    def __init__(
        self,
        db: Database,
        pii: Pii,
        audit_key: bytes,
        *,
        shed_after: float = 5.0,
        process: CaptureProcess | None = None,
    ) -> None:
        self._db, self._pii, self._audit_key = db, pii, audit_key
        self._shed_after = shed_after
        self._ready = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._process = process

    def submit(
        self, lead_in: s.LeadCreate, entry: audit.AuditEvent, *, arrived: float | None = None
    ) -> Future[s.LeadResult]:
        """Queue ``lead_in`` with its audit ``entry`` (its resource is set to the new lead,
        in the same transaction). The future holds the answer, or what the lead alone would
        raise (422 for a refused lead), or 503 if the request (which arrived at ``arrived``,
        ``time.monotonic()``) waited past ``shed_after`` seconds. A future cancelled before
        its batch starts is dropped unstarted."""
        arrived = time.monotonic() if arrived is None else arrived
        ticket = _Ticket(lead_in, entry, current_correlation_id(), arrived)
        with self._ready:
            if self._stopping:
                raise _interrupted()
            self._waiting.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lead-capture", daemon=True)
                self._thread.start()
            self._ready.notify()
        return ticket.answer

    @property
    def process(self) -> CaptureProcess | None:
        return self._process

    def start(self) -> None:
        if self._process is not None:
            self._process.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand; answer the leads still queued 503 (send again)."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._process is not None:
            self._process.stop()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._capture(batch)
            finally:
                for unanswered in (t for t in batch if not t.answer.done()):
                    unanswered.answer.set_exception(_interrupted())

    def _next_batch(self) -> list[_Ticket] | None:
        """Wait for leads; take the queue's head (``None`` once stopping, with the rest
        answered 503). Leads that waited past ``shed_after`` are answered 503 unstarted:
        under sustained overload their clients have given up, and working on them would
        make every later request late too (at 200 leads/s offered the hub answered 13 a
        second in time before)."""
        with self._ready:
            while not self._waiting and not self._stopping:
                self._ready.wait()
            if self._stopping:
                for ticket in self._waiting:
                    if ticket.answer.set_running_or_notify_cancel():
                        ticket.answer.set_exception(_interrupted())
                self._waiting = []
                return None
            head, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        now = time.monotonic()
        batch = []
        for ticket in head:
            if not ticket.answer.set_running_or_notify_cancel():
                continue
            if now - ticket.arrived > self._shed_after:
                ticket.answer.set_exception(Overloaded(now - ticket.arrived))
                SHED.inc()
            else:
                batch.append(ticket)
        return batch

    def _capture(self, batch: list[_Ticket]) -> None:
        if not batch:
            return
        try:
            self._together(batch)
        except Exception as exc:
            if len(batch) == 1 or _unknown_outcome(exc):
                for ticket in batch:
                    ticket.answer.set_exception(exc)
                return
            for ticket in batch:
                self._capture([ticket])

    def _together(self, batch: list[_Ticket]) -> None:
        jobs = [Job(t.lead_in, t.audit, t.correlation_id) for t in batch]
        with BATCH_SECONDS.time():
            outcomes = self._run_jobs(jobs)
        BATCH_SIZES.observe(len(batch))
        for ticket, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                ticket.answer.set_exception(outcome)
            else:
                ticket.answer.set_result(outcome)

    def _run_jobs(self, jobs: list[Job]) -> list[Outcome]:
        if self._process is not None:
            return self._process.capture(jobs)
        return capture_jobs(self._db, self._pii, self._audit_key, jobs)


def _unknown_outcome(exc: Exception) -> bool:
    """The capture process died with the batch in hand: it may have committed, so the
    leads are answered 503 (send again: a lead sent twice is the same person) rather
    than captured again here."""
    return isinstance(exc, RevHubError) and exc.type == STOPPED


_MADE = threading.Lock()


def queue_of(state: Any, hub: Hub) -> CaptureQueue:
    """The queue kept on ``state`` (the app's), made on first use: capturing in a child
    process when ``hub.settings.capture_process`` says so."""
    with _MADE:
        queue: CaptureQueue | None = getattr(state, "lead_capture_queue", None)
        if queue is None:
            settings = hub.settings
            queue = CaptureQueue(
                hub.db,
                pii_for(settings),
                settings.secrets["audit_key"],
                shed_after=settings.shed_after_seconds,
                process=CaptureProcess(settings) if settings.capture_process else None,
            )
            state.lead_capture_queue = queue
        return queue


def start_capture(state: Any, hub: Hub) -> None:
    """At startup: start the capture process now, not on the first lead (it takes a
    second or two to import RevHub and open the database)."""
    queue_of(state, hub).start()


def stop_capture(state: Any) -> None:
    """At shutdown: finish the batch in hand of the queue kept on ``state``, if any, and
    forget it (an app started again makes a new one)."""
    with _MADE:
        queue: CaptureQueue | None = getattr(state, "lead_capture_queue", None)
        state.lead_capture_queue = None
    if queue is not None:
        queue.stop()
