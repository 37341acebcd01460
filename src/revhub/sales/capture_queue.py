"""Single leads that arrive together are captured together (group commit).

A lead captured alone costs about 10 ms of the hub's CPU, most of it fixed per batch: the
look-ups of ``intake.Intake``, one INSERT per table, the commit. Ten leads in one batch
cost about 3 ms each (``bench/lead_capture.py``). So concurrent ``POST …/sales/leads``
requests queue here; the first waiting request's thread captures everything queued, in
one transaction with each request's audit entry, and the others wait for their answers.
When that batch is done the next waiting thread takes what queued meanwhile. A quiet hub
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Histogram

from revhub.contacts.pii import Pii
from revhub.core.audit import service as audit
from revhub.core.db import Database
from revhub.core.errors import Overloaded, RevHubError
from revhub.core.events.envelope import current_correlation_id
from revhub.core.observability import REGISTRY, SHED
from revhub.sales import schemas as s
from revhub.sales import service

BATCH_SIZES = Histogram(
    "revhub_lead_capture_batch_size",
    "Single-lead captures committed together, per transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
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
    answer: s.LeadResult | BaseException | None = None


class CaptureQueue:
    """One per app (see :func:`queue_of`): the leads waiting to be captured."""

    def __init__(
        self, db: Database, pii: Pii, audit_key: bytes, *, shed_after: float = 5.0
    ) -> None:
        self._db, self._pii, self._audit_key = db, pii, audit_key
        self._shed_after = shed_after
        self._ready = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._busy = False

    def capture(
        self, lead_in: s.LeadCreate, entry: audit.AuditEvent, *, arrived: float | None = None
    ) -> s.LeadResult:
        """Capture ``lead_in`` with the leads queued beside it, its audit ``entry`` in the
        same transaction (the entry's resource is set to the new lead). Raises what the
        lead alone would raise (422 for a refused lead), or 503 if the request (which
        arrived at ``arrived``, ``time.monotonic()``) waited past ``shed_after`` seconds."""
        arrived = time.monotonic() if arrived is None else arrived
        ticket = _Ticket(lead_in, entry, current_correlation_id(), arrived)
        with self._ready:
            self._waiting.append(ticket)
        while ticket.answer is None:
            batch = self._next_batch(ticket)
            if batch:
                try:
                    self._capture(batch)
                finally:
                    for unanswered in (t for t in batch if t.answer is None):
                        unanswered.answer = _interrupted()
                    with self._ready:
                        self._busy = False
                        self._ready.notify_all()
        if isinstance(ticket.answer, BaseException):
            raise ticket.answer
        return ticket.answer

    def _next_batch(self, ticket: _Ticket) -> list[_Ticket]:
        """Wait while another thread captures; then, if ``ticket`` is still unanswered,
        take the queue's head (this thread now works for everyone in it). Leads that
        waited past ``shed_after`` are answered 503 unstarted: under sustained overload
        their clients have given up, and working on them would make every later request
        late too (at 200 leads/s offered the hub answered 13 a second in time before)."""
        with self._ready:
            while self._busy and ticket.answer is None:
                self._ready.wait()
            if ticket.answer is not None:
                return []
            head, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            now = time.monotonic()
            batch = [t for t in head if now - t.arrived <= self._shed_after]
            late = [t for t in head if now - t.arrived > self._shed_after]
            for shed in late:
                shed.answer = Overloaded(now - shed.arrived)
                SHED.inc()
            if late:
                self._ready.notify_all()
            self._busy = bool(batch)
            return batch

    def _capture(self, batch: list[_Ticket]) -> None:
        try:
            self._together(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].answer = exc
                return
            for ticket in batch:
                self._capture([ticket])

    def _together(self, batch: list[_Ticket]) -> None:
        wanted = [("body", t.lead_in) for t in batch]
        with self._db.transaction() as session:
            outcomes = service.capture_batch(
                session, self._pii, wanted, correlations=[t.correlation_id for t in batch]
            )
            entries = [
                replace(ticket.audit, resource_id=str(outcome.lead_id))
                for ticket, outcome in zip(batch, outcomes, strict=True)
                if isinstance(outcome, s.LeadResult)
            ]
            audit.record_many(session, events=entries, key=self._audit_key)
        BATCH_SIZES.observe(len(batch))
        for ticket, outcome in zip(batch, outcomes, strict=True):
            ticket.answer = outcome


_MADE = threading.Lock()


def queue_of(state: Any, make: Callable[[], CaptureQueue]) -> CaptureQueue:
    """The queue kept on ``state`` (the app's), made on first use."""
    with _MADE:
        queue: CaptureQueue | None = getattr(state, "lead_capture_queue", None)
        if queue is None:
            queue = make()
            state.lead_capture_queue = queue
        return queue
