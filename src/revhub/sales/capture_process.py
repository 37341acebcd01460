"""Where a batch of queued single leads is captured: in a child process of its own
(``REVHUB_CAPTURE_PROCESS``, the default), or in the capture queue's thread.

In one process the queue's thread and the event loop share one GIL: while a batch ran, the
event loop had the interpreter every other millisecond, and each statement of the batch
waited for the event loop to let go before it could read its answer. The hub used one of
the machine's cores and its requests waited for each other (on SQLite at 200 leads/s
offered it answered 180 a second, p95 2 s). Here the queue's thread, still in the API
process and still batching, hands each batch to the child and waits on the pipe without
holding the GIL; the child runs the six steps on a core of its own (same sitting: p95
59 ms, every lead answered in time; ``bench/lead_capture.py``).

The child is started with ``spawn`` (forking a threaded server is unsafe) from the same
settings, so it opens the same database and seals with the same keys. A child found dead
is started again before the next batch; a batch in hand when it died is answered 503
(send again). It exits when told to, or when the API process is gone (its pipe closes).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import structlog

from revhub.contacts.pii import Pii
from revhub.core.audit import service as audit
from revhub.core.children import end_child
from revhub.core.db import Database
from revhub.core.errors import RevHubError
from revhub.core.events import outbox
from revhub.core.settings import Settings
from revhub.sales import schemas as s
from revhub.sales import service

log = structlog.get_logger("revhub.capture")

STARTUP_TIMEOUT_S = 120.0
"""How long a new child may take to import RevHub and open the database."""

Outcome = s.LeadResult | BaseException


@dataclass(frozen=True)
class Job:
    """A queued lead as a batch captures it (it crosses the pipe to the child)."""

    lead_in: s.LeadCreate
    audit: audit.AuditEvent
    correlation_id: str | None


def capture_jobs(db: Database, pii: Pii, audit_key: bytes, jobs: list[Job]) -> list[Outcome]:
    """The six steps for each job, in one transaction with each stored lead's audit entry;
    a refused lead's place holds its 422. If a twin request stored the same person between
    the batch's look-ups and its writes (a unique key refused), the transaction runs again
    once: it holds nothing else, so no savepoint is needed (on PostgreSQL two round trips
    of every batch, most of which are a lead or a few)."""
    return service.despite_twins(partial(_capture_once, db, pii, audit_key, jobs))


def _capture_once(db: Database, pii: Pii, audit_key: bytes, jobs: list[Job]) -> list[Outcome]:
    wanted = [("body", job.lead_in) for job in jobs]
    with db.transaction() as session:
        outcomes = service.capture_batch(
            session,
            pii,
            wanted,
            correlations=[job.correlation_id for job in jobs],
            owns_transaction=True,
        )
        entries = [
            replace(job.audit, resource_id=str(outcome.lead_id))
            for job, outcome in zip(jobs, outcomes, strict=True)
            if isinstance(outcome, s.LeadResult)
        ]
        audit.record_many(session, events=entries, key=audit_key)
    return list(outcomes)


def portable(exc: BaseException) -> BaseException:
    """What of ``exc`` crosses the pipe: a problem keeps its status, type, title, detail,
    fields and headers; anything else (a bug, logged in the child) becomes a RuntimeError
    naming it, which the API answers 500."""
    if isinstance(exc, RevHubError):
        return RevHubError(exc.status, exc.type, exc.title, exc.detail, exc.errors, exc.headers)
    return RuntimeError(f"{type(exc).__name__}: {exc}")


STOPPED = "capture-process-stopped"


def _stopped() -> RevHubError:
    return RevHubError(
        503,
        STOPPED,
        "Capture process stopped",
        "The capture process stopped before answering (it is being restarted); send the "
        "lead again.",
        headers={"Retry-After": "1"},
    )


class CaptureUnavailable(RuntimeError):
    """The child did not come up: say why, and how to run without it."""

    def __init__(self, kind: str, cause: object, exit_code: int | None) -> None:
        why = {
            "silent": f"did not answer within {STARTUP_TIMEOUT_S:g} s",
            "exited": f"exited while starting (exit code {exit_code}; its error is logged above)",
        }.get(kind, f"could not start: {cause}")
        super().__init__(
            f"The lead-capture process {why}. Fix that and start again, or set "
            "REVHUB_CAPTURE_PROCESS=false to capture single leads inside the API process."
        )


class CaptureProcess:
    """The child and the pipe to it, used by the capture queue's one thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._pipe: Connection | None = None
        self._child: BaseProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Start the child and wait until it has opened the database; raise what stopped
        it otherwise."""
        self.stop()
        parent, child_end = self._context.Pipe()
        child = self._context.Process(
            target=serve_captures, args=(child_end, self._settings), name="revhub-capture"
        )
        child.daemon = True
        child.start()
        child_end.close()
        self._pipe, self._child = parent, child
        try:
            kind, value = parent.recv() if parent.poll(STARTUP_TIMEOUT_S) else ("silent", None)
        except (EOFError, OSError):
            kind, value = "exited", None
        if kind != "ready":
            self.stop()
            raise CaptureUnavailable(kind, value, child.exitcode)

    def capture(self, jobs: list[Job]) -> list[Outcome]:
        """Run ``jobs`` in the child (started first if it is not running); what it
        committed is news for this process's consumers."""
        if self._child is None or not self._child.is_alive():
            self._restart()
        assert self._pipe is not None
        try:
            self._pipe.send(jobs)
        except OSError:
            self.stop()
            raise _stopped() from None
        kind, value = self._receive()
        if isinstance(value, BaseException):
            raise value
        assert kind == "done"
        assert isinstance(value, list)
        outbox.NEWS.arrived()
        return value

    def _restart(self) -> None:
        try:
            self.start()
        except CaptureUnavailable as exc:
            log.error("capture_process_unavailable", error=str(exc))
            raise _stopped() from exc

    def _receive(self) -> tuple[str, object]:
        assert self._pipe is not None
        try:
            kind, value = self._pipe.recv()
        except (EOFError, OSError):
            self.stop()
            raise _stopped() from None
        return kind, value

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the child to exit once its batch is done; kill it if it does not."""
        pipe, child, self._pipe, self._child = self._pipe, self._child, None, None
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.send(None)
            pipe.close()
        if child is not None:
            end_child(child, timeout)


def serve_captures(pipe: Connection, settings: Settings) -> None:
    """The child: open the database, set up the mappers and freeze what is loaded so far out
    of the garbage collector's passes (``core.memory``), say ready, then capture each batch
    received until ``None`` (or until the API process is gone)."""
    from sqlalchemy.orm import configure_mappers

    from revhub.contacts.pii import pii_for
    from revhub.core.memory import SHORT_PAUSE_THRESHOLD, tune_garbage_collector
    from revhub.core.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        db = Database.from_url(settings.effective_database_url)
        with db.engine.connect():
            pass
        configure_mappers()
        pii, key = pii_for(settings), settings.secrets["audit_key"]
    except Exception as exc:
        pipe.send(("failed", portable(exc)))
        return
    tune_garbage_collector(SHORT_PAUSE_THRESHOLD, timed=False)
    pipe.send(("ready", None))
    try:
        while (jobs := pipe.recv()) is not None:
            pipe.send(_answer(db, pii, key, jobs))
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        db.engine.dispose()


def _answer(db: Database, pii: Pii, key: bytes, jobs: list[Job]) -> tuple[str, object]:
    try:
        outcomes = capture_jobs(db, pii, key, jobs)
    except Exception as exc:
        if not isinstance(exc, RevHubError):
            log.exception("capture_batch_failed")
        return "failed", portable(exc)
    return "done", [portable(o) if isinstance(o, BaseException) else o for o in outcomes]
