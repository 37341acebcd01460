"""Running syncs: a whole sync of one connection, sync requests, and the real-time push.

A sync of a connection is four runs in order: push contacts, pull contacts, pull deals,
push deals (a pull after the push finds the hub's own writes already agreed; the deal push
comes last so the deals just pulled get the hub's fields in the same sync).
``revhub crm sync`` runs one in the foreground; the 02:00 job and ``POST …/sync`` leave a
:class:`SyncRequest` for the worker, which also pushes what the ``crm-sync`` consumer
queued, every second.

Each connection syncs on a thread of its own (up to ``SyncWorker.threads`` at once) and
one connection's sync never waits for another's: a CRM that is down or slow holds up only
itself. After a failed run the connection rests (``REST_AFTER_FAILURE``) before the worker
calls it again; its rows wait in the failed-row index meanwhile. With several workers, a
:class:`Lease` lets one process at a time sync a connection.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from revhub.contacts.pii import Pii
from revhub.core.crypto import SecretBox
from revhub.core.db import Database, once_per_transaction, utcnow
from revhub.core.errors import Conflict
from revhub.core.events.consumers import Wants
from revhub.crm.connectors.base import ObjectKind
from revhub.crm.mappings import Mappings
from revhub.crm.models import CrmConnection, PendingPush, SyncRequest, SyncRun
from revhub.crm.pull import pull
from revhub.crm.push import Progress, Sleep, push_contacts, push_deals
from revhub.crm.service import Target, get_connection, open_target

ACTIVE_CONNECTIONS = "revhub.crm.active_connections"
PUSH_BATCH = 500
LEASE_SECONDS = 300.0
"""How long a process holds a connection without renewing (a holder renews it every
``LEASE_SECONDS / 10``): a process that died frees its connections within this time."""
REST_AFTER_FAILURE = 30.0
"""Seconds a connection's real-time push rests after a run that could not reach the CRM."""

log = structlog.get_logger("revhub.crm")

Step = Callable[[Progress | None], SyncRun]
"""One run of a sync, given its progress callback."""
StepProgress = Callable[[str], Progress]
"""``progress_for(step)`` gives the progress callback of one step (``push contacts``…)."""


@dataclass
class Lease:
    """One process at a time syncs a connection: with several workers (or a worker and
    ``revhub crm sync``) two pushes of the same rows would create Pipedrive persons twice.
    Taking it is one conditional UPDATE, atomic on SQLite and PostgreSQL alike."""

    db: Database
    connection_id: uuid.UUID
    holder: str

    def take(self) -> bool:
        now = utcnow()
        with self.db.transaction() as session:
            taken = session.connection().execute(
                update(CrmConnection)
                .where(
                    CrmConnection.id == self.connection_id,
                    or_(
                        CrmConnection.sync_until.is_(None),
                        CrmConnection.sync_until < now,
                        CrmConnection.sync_holder == self.holder,
                    ),
                )
                .values(sync_holder=self.holder, sync_until=now + timedelta(seconds=LEASE_SECONDS))
            )
        return bool(taken.rowcount)

    @contextmanager
    def held(self) -> Iterator[bool]:
        """Take the lease and keep it renewed from a thread of its own until the block
        ends — one slow vendor call or a long rate-limit wait outlasts any renewal made
        between calls; yields whether it was taken."""
        if not self.take():
            yield False
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(LEASE_SECONDS / 10):
                if not self.take():
                    log.warning(
                        "crm sync lease lost",
                        connection_id=str(self.connection_id),
                        holder=self.holder,
                    )

        heart = threading.Thread(target=beat, name="crm-sync-lease", daemon=True)
        heart.start()
        try:
            yield True
        finally:
            stop.set()
            heart.join()
            self.release()

    def release(self) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(CrmConnection)
                .where(
                    CrmConnection.id == self.connection_id,
                    CrmConnection.sync_holder == self.holder,
                )
                .values(sync_holder=None, sync_until=None)
                .execution_options(synchronize_session=False)
            )


def holder_name(role: str) -> str:
    """Who holds a lease: the role, host and process (for a person reading the row)."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:128]


def sync_connection(
    db: Database,
    pii: Pii,
    box: SecretBox,
    mappings: Mappings,
    *,
    name: str,
    full: bool = False,
    trigger: str = "manual",
    sleep: Sleep = time.sleep,
    progress_for: StepProgress | None = None,
) -> list[SyncRun]:
    """Push contacts, pull contacts, pull deals, push deals; the four finished runs (409
    while another process syncs the connection)."""
    with db.reading() as session:
        connection = get_connection(session, name=name)
        session.expunge(connection)
    with Lease(db, connection.id, holder_name(trigger)).held() as taken:
        if not taken:
            raise _busy(db, name)
        return _sync(
            db,
            pii,
            open_target(connection, box, mappings, db, pii),
            full=full,
            trigger=trigger,
            sleep=sleep,
            progress_for=progress_for,
        )


def _busy(db: Database, name: str) -> Conflict:
    with db.reading() as session:
        held = get_connection(session, name=name)
        holder, until = held.sync_holder, held.sync_until
    at_latest = f"{until:%H:%M:%S} UTC" if until else "soon"
    return Conflict(
        f"{name} is being synced by {holder} (until {at_latest} at the latest); "
        "try again when it is done."
    )


def _sync(
    db: Database,
    pii: Pii,
    target: Target,
    *,
    full: bool,
    trigger: str,
    sleep: Sleep = time.sleep,
    progress_for: StepProgress | None = None,
) -> list[SyncRun]:
    def pulled(kind: ObjectKind) -> Step:
        return lambda progress: pull(
            db, pii, target, kind, trigger=trigger, full=full, sleep=sleep, progress=progress
        )

    steps: list[tuple[str, Step]] = [
        (
            "push contacts",
            lambda progress: push_contacts(
                db, pii, target, trigger=trigger, full=full, sleep=sleep, progress=progress
            ),
        ),
        ("pull contacts", pulled("contact")),
        ("pull deals", pulled("deal")),
        (
            "push deals",
            lambda progress: push_deals(
                db, target, trigger=trigger, full=full, sleep=sleep, progress=progress
            ),
        ),
    ]
    try:
        return [run(progress_for(label) if progress_for else None) for label, run in steps]
    finally:
        target.close()


def request_sync(
    session: Session, *, connection_id: uuid.UUID, full: bool, trigger: str
) -> SyncRequest:
    """Ask the worker for a sync (a second request before it starts is the same one; a
    ``full`` request stays full). A request made while a sync runs is dated now, so the
    end of that sync does not take it for its own."""
    found = session.get(SyncRequest, connection_id)
    if found is None:
        found = SyncRequest(connection_id=connection_id, full=full, trigger=trigger)
        session.add(found)
    else:
        found.full = found.full or full
        found.trigger, found.requested_at = trigger, utcnow()
    session.flush()
    return found


_READ_ACTIVE_CONNECTIONS = select(CrmConnection.id).where(CrmConnection.active.is_(True))
"""Built once, not for every event the consumer queues (see ``queue_push``)."""


def connections_want(session: Session) -> Wants:
    """The ``crm-sync`` consumer's interest: every event while a connection is active (the
    push goes to each), none while there is none."""
    connected = session.scalars(_READ_ACTIVE_CONNECTIONS.limit(1)).first() is not None
    return lambda _topic, _event_type: connected


def queue_push(session: Session, *, hub_id: uuid.UUID, kind: ObjectKind = "contact") -> int:
    """Queue a contact or deal for the real-time push to every active connection (one
    queued already is queued again from now, so a change made while it is being pushed is
    not dropped with its queue entry)."""
    connections = once_per_transaction(
        session, ACTIVE_CONNECTIONS, lambda: [*session.scalars(_READ_ACTIVE_CONNECTIONS)]
    )
    for connection_id in connections:
        waiting = session.get(PendingPush, (connection_id, hub_id))
        if waiting is None:
            session.add(PendingPush(connection_id=connection_id, hub_id=hub_id, kind=kind))
        else:
            waiting.queued_at = utcnow()
    return len(connections)


@dataclass
class SyncWorker:
    """The worker's CRM chore: for each active connection, on its own thread, run a
    requested sync or push what the consumer queued."""

    db: Database
    pii: Pii
    box: SecretBox
    mappings: Mappings
    threads: int = 16
    """Connections synced at once, each on a thread of its own."""
    sleep: Sleep = time.sleep
    _pool: ThreadPoolExecutor | None = None
    _busy: dict[uuid.UUID, Future[None]] = field(default_factory=dict)
    _rest_until: dict[uuid.UUID, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> int:
        """Start work for every idle connection that has some; returns how many started."""
        with self.db.reading() as session:
            connections = session.scalars(
                select(CrmConnection).where(CrmConnection.active.is_(True))
            ).all()
            for connection in connections:
                session.expunge(connection)
        started = 0
        for connection in connections:
            with self._lock:
                running = self._busy.get(connection.id)
                if running is not None and not running.done():
                    continue
                self._busy[connection.id] = self._executor().submit(self.serve, connection)
                started += 1
        return started

    def serve(self, connection: CrmConnection) -> None:
        """One connection's turn, if no other process holds it: a requested sync first,
        else the real-time push."""
        if not self._has_work(connection):
            return
        try:
            with Lease(self.db, connection.id, holder_name("worker")).held() as taken:
                if taken and not self._requested(connection):
                    self._push_queued(connection)
        except Exception:  # one connection's failure must not stop the chore
            log.exception("crm sync failed", connection=connection.name)
            self._rest_until[connection.id] = time.monotonic() + REST_AFTER_FAILURE

    def _has_work(self, connection: CrmConnection) -> bool:
        """A sync asked for, or records queued, while the connection is not resting after a
        failure: read first, so an idle connection costs one read a second and no write."""
        if time.monotonic() < self._rest_until.get(connection.id, 0.0):
            return False
        with self.db.reading() as session:
            if session.get(SyncRequest, connection.id) is not None:
                return True
            waiting = select(PendingPush.hub_id).where(PendingPush.connection_id == connection.id)
            return session.scalar(waiting.limit(1)) is not None

    def drain(self) -> None:
        """Wait for the work started so far (tests, shutdown)."""
        for running in list(self._busy.values()):
            running.result()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="crm-sync")
        return self._pool

    def _requested(self, connection: CrmConnection) -> bool:
        with self.db.reading() as session:
            request = session.get(SyncRequest, connection.id)
            wanted = (
                None if request is None else (request.full, request.trigger, request.requested_at)
            )
        if wanted is None:
            return False
        full, trigger, requested_at = wanted
        target = open_target(connection, self.box, self.mappings, self.db, self.pii)
        runs = _sync(
            self.db,
            self.pii,
            target,
            full=full,
            trigger=trigger,
            sleep=self.sleep,
        )
        with self.db.transaction() as session:
            session.execute(
                delete(SyncRequest).where(
                    SyncRequest.connection_id == connection.id,
                    SyncRequest.requested_at <= requested_at,
                )
            )
        log.info("crm sync done", connection=connection.name, runs=[r.counts for r in runs])
        return True

    def _push_queued(self, connection: CrmConnection) -> None:
        read_at = utcnow()
        with self.db.reading() as session:
            queued = session.execute(
                select(PendingPush.hub_id, PendingPush.kind)
                .where(PendingPush.connection_id == connection.id)
                .order_by(PendingPush.queued_at)
                .limit(PUSH_BATCH)
            ).all()
        if not queued:
            return
        contacts = [hub_id for hub_id, kind in queued if kind == "contact"]
        deals = [hub_id for hub_id, kind in queued if kind == "deal"]
        target = open_target(connection, self.box, self.mappings, self.db, self.pii)
        try:
            runs = []
            if contacts:
                runs.append(
                    push_contacts(
                        self.db,
                        self.pii,
                        target,
                        trigger="realtime",
                        only=contacts,
                        sleep=self.sleep,
                    )
                )
            if deals:
                runs.append(
                    push_deals(
                        self.db,
                        target,
                        trigger="realtime",
                        only=deals,
                        sleep=self.sleep,
                    )
                )
        finally:
            target.close()
        if any(run.detail.startswith("CRM unavailable") for run in runs):
            self._rest_until[connection.id] = time.monotonic() + REST_AFTER_FAILURE
        with self.db.transaction() as session:
            session.execute(
                delete(PendingPush).where(
                    PendingPush.connection_id == connection.id,
                    PendingPush.hub_id.in_([hub_id for hub_id, _ in queued]),
                    PendingPush.queued_at <= read_at,
                )
            )
