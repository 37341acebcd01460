"""Single leads arriving together are captured together, each with its own answer and
audit entry. These tests commit for real (threads, one SQLite file or PostgreSQL database
of their own), so they use a scratch database, not the test's rolled-back transaction."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, text

from revhub.api import create_app
from revhub.contacts.models import Contact, Identity
from revhub.contacts.pii import pii_for
from revhub.core.audit import service as audit
from revhub.core.audit.models import AuditEntry
from revhub.core.db import Database, utcnow
from revhub.core.errors import InvalidInput, Overloaded, RevHubError
from revhub.core.events.envelope import correlated
from revhub.core.events.models import OutboxEvent
from revhub.core.http import DB_CONCURRENCY
from revhub.core.observability import REGISTRY
from revhub.core.settings import Settings
from revhub.sales import schemas as s
from revhub.sales.capture_process import Job, capture_jobs
from revhub.sales.capture_queue import CaptureQueue
from revhub.sales.models import Lead
from tests.factories import ApiKeyFactory
from tests.sales.factories import lead_at, unique


def _queue(db: Database, settings: Settings, shed_after: float = 60.0) -> CaptureQueue:
    return CaptureQueue(db, pii_for(settings), settings.secrets["audit_key"], shed_after=shed_after)


def _entry() -> audit.AuditEvent:
    return audit.AuditEvent(
        occurred_at=utcnow(),
        actor="test",
        action="POST /api/v1/integrations/sales/leads",
        resource_type="sales",
        outcome="success",
        status_code=201,
    )


def _batches() -> float:
    return REGISTRY.get_sample_value("revhub_lead_capture_batch_size_count") or 0.0


def _batches_up_to(size: int) -> float:
    labels = {"le": f"{float(size)}"}
    return REGISTRY.get_sample_value("revhub_lead_capture_batch_size_bucket", labels) or 0.0


def _capture_all(
    queue: CaptureQueue,
    db: Database,
    bodies: list[dict[str, object]],
    waited: Callable[[int], float] = lambda _i: 0.0,
) -> list[s.LeadResult | Exception]:
    """Send ``bodies`` from threads of their own while a writer holds the database, so
    they all queue; then let them go. ``waited(i)``: how many seconds lead ``i`` had
    already waited when it reached the queue (in a server, for a thread to take it)."""
    answers: list[s.LeadResult | Exception] = [RuntimeError("no answer")] * len(bodies)

    def send(i: int) -> None:
        lead_in, arrived = s.LeadCreate.model_validate(bodies[i]), time.monotonic() - waited(i)
        try:
            with correlated(f"request-{i}"):
                answers[i] = queue.submit(lead_in, _entry(), arrived=arrived).result()
        except Exception as exc:
            answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    with db.transaction() as blocker:  # holds the write lock (SQLite) / a row (PostgreSQL)
        blocker.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        for thread in threads:
            thread.start()
        threading.Event().wait(0.5)
    for thread in threads:
        thread.join(30)
    return answers


def test_leads_sent_together_share_transactions_and_each_gets_its_answer(
    scratch_db: Database, settings: Settings
) -> None:
    queue = _queue(scratch_db, settings)
    bodies = [lead_at(f"{unique('q')}.example") for _ in range(12)]
    before = _batches()

    answers = _capture_all(queue, scratch_db, bodies)

    assert all(isinstance(a, s.LeadResult) for a in answers), answers
    lead_ids = {a.lead_id for a in answers if isinstance(a, s.LeadResult)}
    assert len(lead_ids) == 12
    assert _batches() - before < 12  # some leads were committed together
    with scratch_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 12
        audited = set(session.scalars(select(AuditEntry.resource_id)))
        assert {str(i) for i in lead_ids} <= audited
        assert audit.verify(session, key=settings.secrets["audit_key"]).ok


def test_each_leads_events_carry_its_own_requests_correlation_id(
    scratch_db: Database, settings: Settings
) -> None:
    queue = _queue(scratch_db, settings)
    bodies = [lead_at(f"{unique('c')}.example") for _ in range(6)]
    before = _batches()

    answers = _capture_all(queue, scratch_db, bodies)

    assert _batches() - before < 6
    sent_by = {
        a.lead_id: f"request-{i}" for i, a in enumerate(answers) if isinstance(a, s.LeadResult)
    }
    assert len(sent_by) == 6
    with scratch_db.transaction() as session:
        processed = session.scalars(
            select(OutboxEvent).where(OutboxEvent.event_type == "lead.processed")
        ).all()
    carried = {uuid.UUID(e.payload["lead_id"]): e.meta["correlation_id"] for e in processed}
    assert carried == sent_by


def test_a_refused_lead_fails_alone(scratch_db: Database, settings: Settings) -> None:
    queue = _queue(scratch_db, settings)
    bodies = [lead_at(f"{unique('r')}.example") for _ in range(5)]
    bodies[2] = {**bodies[2], "email": "not an address"}

    answers = _capture_all(queue, scratch_db, bodies)

    refused = answers[2]
    assert isinstance(refused, InvalidInput)
    assert [e.field for e in refused.errors] == ["body.email"]
    assert all(isinstance(a, s.LeadResult) for i, a in enumerate(answers) if i != 2)
    with scratch_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 4


def test_the_same_person_twice_in_a_batch_is_one_profile(
    scratch_db: Database, settings: Settings
) -> None:
    queue = _queue(scratch_db, settings)
    body = lead_at(f"{unique('t')}.example")
    answers = _capture_all(queue, scratch_db, [body, body, body])
    results = [a for a in answers if isinstance(a, s.LeadResult)]
    assert len(results) == 3
    assert len({r.contact_id for r in results}) == 1
    assert sorted(r.steps.deduplication.outcome for r in results) == [
        "created",
        "updated",
        "updated",
    ]
    assert all(isinstance(r.lead_id, uuid.UUID) for r in results)


def test_leads_that_waited_too_long_are_shed_unstarted(
    scratch_db: Database, settings: Settings
) -> None:
    """Under overload a lead that waited past REVHUB_SHED_AFTER_SECONDS is answered 503
    without work: its client has given up, and capturing it would make the rest late.
    Half the leads arrive having waited a second already (which batch takes a fresh lead
    depends on when the queue's thread wakes; a lead that waits out the held database is
    shed too)."""
    queue = _queue(scratch_db, settings, shed_after=0.2)
    bodies = [lead_at(f"{unique('o')}.example") for _ in range(8)]

    answers = _capture_all(queue, scratch_db, bodies, waited=lambda i: 1.0 if i % 2 else 0.0)

    shed = [a for a in answers if isinstance(a, Overloaded)]
    stored = [a for a in answers if isinstance(a, s.LeadResult)]
    assert all(isinstance(answers[i], Overloaded) for i in range(1, 8, 2)), answers
    assert len(shed) + len(stored) == 8
    assert all(a.status == 503 and a.headers == {"Retry-After": "1"} for a in shed)
    with scratch_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == len(stored)


def test_requests_awaiting_the_queue_hold_no_thread(
    scratch_db: Database, settings: Settings
) -> None:
    """Through HTTP: with the database held, 60 leads sent at once (more than the 40
    threads FastAPI runs sync code on, and than the transactions a process opens at once)
    all queue, and go in batches larger than either limit would let gather."""
    with scratch_db.transaction() as session:
        _key, token = ApiKeyFactory(session).create(role="sales")
    headers = {"X-API-Key": token}
    app = create_app(settings, db=scratch_db, check_schema=False)
    url = "/api/v1/integrations/sales/leads"
    bodies = [lead_at(f"{unique('h')}.example") for _ in range(60)]
    with TestClient(app) as client, ThreadPoolExecutor(60) as pool:
        assert client.post(url, json=bodies.pop(), headers=headers).status_code == 201
        larger_before = _batches() - _batches_up_to(DB_CONCURRENCY)
        with scratch_db.transaction() as blocker:
            blocker.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
            sent = [pool.submit(client.post, url, json=b, headers=headers) for b in bodies]
            threading.Event().wait(1.0)
        codes = [f.result(timeout=60).status_code for f in sent]

    assert codes == [201] * 59
    assert _batches() - _batches_up_to(DB_CONCURRENCY) > larger_before
    with scratch_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 60


def test_stopping_finishes_the_batch_in_hand_and_answers_the_rest(
    scratch_db: Database, settings: Settings
) -> None:
    """At shutdown the lead being captured is stored; the leads still queued are answered
    503 (send again), unstarted, and so is one sent after."""
    queue = _queue(scratch_db, settings)
    first = lead_at(f"{unique('s')}.example")
    with scratch_db.transaction() as blocker:
        blocker.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        in_hand = queue.submit(s.LeadCreate.model_validate(first), _entry())
        threading.Event().wait(0.3)  # the queue's thread took it and waits for the database
        queued = [
            queue.submit(s.LeadCreate.model_validate(lead_at(f"{unique('s')}.example")), _entry())
            for _ in range(3)
        ]
        stopping = threading.Thread(target=queue.stop)
        stopping.start()
        threading.Event().wait(0.2)
    stopping.join(30)

    assert isinstance(in_hand.result(timeout=5), s.LeadResult)
    refused = [f.exception(timeout=5) for f in queued]
    assert all(isinstance(e, RevHubError) and e.status == 503 for e in refused), refused
    with pytest.raises(RevHubError) as late:
        queue.submit(s.LeadCreate.model_validate(lead_at(f"{unique('s')}.example")), _entry())
    assert late.value.status == 503
    with scratch_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 1


def test_a_batch_a_twin_request_got_ahead_of_runs_again_whole_and_finds_the_twin(
    scratch_db: Database, settings: Settings
) -> None:
    """Between the batch's look-ups and its writes another process stores the same person
    (here without claiming them, as nothing in RevHub would): the unique key refuses the
    batch, whose transaction holds nothing else, so it runs again once, without a
    savepoint, and updates the person the twin stored. SQLite lets no second writer in."""
    if scratch_db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no twin can come between")
    pii = pii_for(settings)
    body = lead_at(f"{unique('twin')}.example")
    twin = uuid.uuid4()

    def store_the_twin(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.startswith("INSERT INTO identity (") and not twins:
            twins.append(twin)
            with scratch_db.transaction() as other:
                other.add(Contact(id=twin, stage="lead", stage_changed_at=utcnow()))
                other.flush()
                other.add(
                    Identity(
                        id=uuid.uuid4(),
                        contact_id=twin,
                        kind="email",
                        key=pii.email_index(str(body["email"])),
                        created_at=utcnow(),
                    )
                )

    twins: list[uuid.UUID] = []
    event.listen(scratch_db.engine, "before_cursor_execute", store_the_twin)
    try:
        jobs = [Job(s.LeadCreate.model_validate(body), _entry(), None)]
        (outcome,) = capture_jobs(scratch_db, pii, settings.secrets["audit_key"], jobs)
    finally:
        event.remove(scratch_db.engine, "before_cursor_execute", store_the_twin)
    assert isinstance(outcome, s.LeadResult), outcome
    assert (outcome.contact_id, outcome.steps.deduplication.outcome) == (twin, "updated")
    with scratch_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 1
