"""Batched writes: history rows and counter updates held to the end of a batch and written
as one statement per table, or not at all when the batch fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from revhub.contacts.models import Contact, StageChange
from revhub.core.db import (
    PIPELINED_ROWS,
    add_later,
    add_row_later,
    batched_writes,
    insert_rows,
    set_later,
    set_row_later,
    utcnow,
    with_held_rows,
    write_held,
)
from revhub.core.events import outbox
from revhub.core.events.models import OutboxEvent
from revhub.sales.models import LeadScore, Touchpoint


def _person(session: Session) -> Contact:
    contact = Contact(id=uuid.uuid4(), stage="lead", stage_changed_at=utcnow())
    session.add(contact)
    session.flush()
    return contact


def _change(contact: Contact, to_stage: str) -> StageChange:
    return StageChange(
        contact_id=contact.id, to_stage=to_stage, changed_at=utcnow(), reason="t", source="t"
    )


def _changes(session: Session, contact: Contact) -> list[str]:
    query = select(StageChange.to_stage).where(StageChange.contact_id == contact.id)
    return sorted(session.scalars(query))


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = session.get_bind()

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.split("(")[0].strip())

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_held_rows_are_written_in_one_insert_when_the_block_ends(session: Session) -> None:
    contact = _person(session)
    with _statements(session) as seen:
        with batched_writes(session):
            for stage in ("mql", "sql", "opportunity"):
                add_later(session, _change(contact, stage))
            assert _changes(session, contact) == []
        inserts = [s for s in seen if s in ("INSERT INTO stage_change", "COPY stage_change")]
    assert len(inserts) == 1
    assert _changes(session, contact) == ["mql", "opportunity", "sql"]


def test_nothing_held_is_written_when_the_block_raises(session: Session) -> None:
    contact = _person(session)

    def failing_batch() -> None:
        with batched_writes(session):
            add_later(session, _change(contact, "mql"))
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        failing_batch()
    with batched_writes(session):
        add_later(session, _change(contact, "sql"))
    assert _changes(session, contact) == ["sql"]


def test_outside_a_block_a_row_is_added_as_usual(session: Session) -> None:
    contact = _person(session)
    add_later(session, _change(contact, "mql"))
    assert _changes(session, contact) == ["mql"]  # autoflush found it


def test_write_held_makes_rows_visible_inside_the_block(session: Session) -> None:
    """A merge inside a batch moves a person's rows with UPDATEs; it writes what is held
    first so that rows added earlier in the batch move too."""
    contact = _person(session)
    with batched_writes(session):
        add_later(session, _change(contact, "mql"))
        write_held(session)
        assert _changes(session, contact) == ["mql"]
        add_later(session, _change(contact, "sql"))
    assert _changes(session, contact) == ["mql", "sql"]


def test_set_later_shows_at_once_and_is_stored_at_the_end(session: Session) -> None:
    people = [_person(session) for _ in range(3)]
    with _statements(session) as seen, batched_writes(session):
        for n, contact in enumerate(people):
            set_later(session, contact, {"company": f"Firm {n}", "quality_score": n})
            assert contact.company == f"Firm {n}"
            assert contact not in session.dirty
    assert len([s for s in seen if s.startswith("UPDATE contact")]) == 1
    session.expire_all()
    stored = {
        c.company: c.quality_score
        for c in session.scalars(select(Contact).where(Contact.id.in_([p.id for p in people])))
    }
    assert stored == {"Firm 0": 0, "Firm 1": 1, "Firm 2": 2}


def test_nested_blocks_write_when_the_outermost_ends(session: Session) -> None:
    contact = _person(session)
    with batched_writes(session):
        with batched_writes(session):
            add_later(session, _change(contact, "mql"))
        assert _changes(session, contact) == []
    count = select(func.count()).select_from(StageChange)
    assert session.scalar(count.where(StageChange.contact_id == contact.id)) == 1


def test_set_later_twice_on_a_row_keeps_the_last_value_of_each_column(session: Session) -> None:
    contact = _person(session)
    with batched_writes(session):
        set_later(session, contact, {"company": "First", "quality_score": 10})
        set_later(session, contact, {"company": "Second"})
        set_later(session, contact, {"job_title": "CTO"})
    session.expire_all()
    stored = session.get(Contact, contact.id)
    assert stored is not None
    assert (stored.company, stored.quality_score, stored.job_title) == ("Second", 10, "CTO")


def _score_row(contact: Contact, total: int) -> dict[str, Any]:
    return {"contact_id": contact.id, "fit": 0, "engagement": total, "total": total}


def test_plain_rows_get_the_column_defaults_and_read_back_as_the_orm_writes_them(
    session: Session,
) -> None:
    contact = _person(session)
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with batched_writes(session):
        add_row_later(
            session,
            Touchpoint,
            {"contact_id": contact.id, "channel": "email", "kind": "email_open", "occurred_at": at},
        )
        add_row_later(session, LeadScore, _score_row(contact, 40))
    stored = session.scalars(select(Touchpoint).where(Touchpoint.contact_id == contact.id)).one()
    assert isinstance(stored.id, uuid.UUID)
    assert stored.meta == {}  # the callable default
    assert stored.occurred_at == at
    assert stored.created_at.tzinfo is not None
    score = session.get(LeadScore, contact.id)
    assert score is not None
    assert (score.total, score.icp_fit, score.model_version) == (40, False, 1)  # scalar defaults


def test_set_row_later_updates_a_row_held_in_the_same_block(session: Session) -> None:
    contact = _person(session)
    with batched_writes(session):
        add_row_later(session, LeadScore, _score_row(contact, 10))
        set_row_later(session, LeadScore, {"contact_id": contact.id}, {"total": 55})
    session.expire_all()
    stored = session.get(LeadScore, contact.id)
    assert stored is not None
    assert (stored.engagement, stored.total) == (10, 55)


def test_outside_a_block_a_plain_row_is_written_after_the_objects_it_refers_to(
    session: Session,
) -> None:
    contact = Contact(id=uuid.uuid4(), stage="lead", stage_changed_at=utcnow())
    session.add(contact)  # not flushed: the row below refers to it
    change = {"contact_id": contact.id, "to_stage": "mql", "changed_at": utcnow()}
    add_row_later(session, StageChange, change | {"reason": "t", "source": "t"})
    assert _changes(session, contact) == ["mql"]


def test_many_rows_are_all_written(session: Session) -> None:
    contact = _person(session)
    stages = [f"stage-{n:04d}" for n in range(2500)]
    with batched_writes(session):
        for stage in stages:
            add_later(session, _change(contact, stage))
    assert _changes(session, contact) == stages


def test_a_row_that_breaks_a_unique_key_is_refused_as_an_integrity_error(
    session: Session,
) -> None:
    """A capture retries when a twin request stored the same person first: it must see the
    database's refusal as SQLAlchemy's ``IntegrityError``, whatever the backend."""
    contact = _person(session)
    with pytest.raises(IntegrityError), session.begin_nested():
        insert_rows(session, LeadScore, [_score_row(contact, 1), _score_row(contact, 2)])
    assert session.get(LeadScore, contact.id) is None


def test_an_update_stamps_updated_at_and_stores_times_and_ids_as_the_orm_does(
    session: Session,
) -> None:
    """Held updates go straight to the driver: the ``onupdate`` stamp, an aware time and a
    key must still be written as the ORM writes them."""
    contact = _person(session)
    session.execute(
        update(Contact)
        .where(Contact.id == contact.id)
        .values(updated_at=datetime(2020, 1, 1, tzinfo=UTC))
    )
    at = datetime(2026, 3, 1, 12, 30, 15, 250, tzinfo=UTC)
    with batched_writes(session):
        add_row_later(session, LeadScore, _score_row(contact, 10))
    with batched_writes(session):
        set_later(session, contact, {"company": "Stamped"})
        set_row_later(session, LeadScore, {"contact_id": contact.id}, {"computed_at": at})
    session.expire_all()
    stored = session.get(Contact, contact.id)
    score = session.get(LeadScore, contact.id)
    assert stored is not None and score is not None
    assert stored.company == "Stamped"
    assert stored.updated_at > datetime(2025, 1, 1, tzinfo=UTC)
    assert score.computed_at == at
    later = select(LeadScore.contact_id).where(LeadScore.computed_at > at - timedelta(seconds=1))
    assert session.scalars(later).all() == [contact.id]


def _new_person() -> Contact:
    return Contact(id=uuid.uuid4(), stage="lead", stage_changed_at=utcnow())


def test_a_held_person_is_written_before_the_rows_that_refer_to_them(session: Session) -> None:
    """Held inserts go table by table in foreign-key order, whatever order they were held
    in (a batch's first lead may add a touchpoint before a later lead creates a person)."""
    contact = _new_person()
    with batched_writes(session):
        add_later(session, _change(contact, "mql"))
        add_row_later(session, LeadScore, _score_row(contact, 5))
        add_later(session, contact)
    assert _changes(session, contact) == ["mql"]
    assert session.get(LeadScore, contact.id) is not None


def test_a_held_object_joins_the_session_once_written(session: Session) -> None:
    """Once written, a held person is persistent with every column loaded (reading one
    costs no query) and a later change is flushed as an update."""
    contact = _new_person()
    with batched_writes(session):
        add_later(session, contact)
        contact.company = "Before"
        assert contact not in session
        write_held(session)
        assert inspect(contact).persistent
        with _statements(session) as seen:
            assert (contact.merged_into_id, contact.job_title) == (None, None)
            assert contact.updated_at.tzinfo is not None  # the column default, as stored
        assert seen == []
        contact.company = "After"
    session.flush()
    session.expire_all()
    stored = session.get(Contact, contact.id)
    assert stored is not None
    assert stored.company == "After"


def test_a_refusal_among_the_held_writes_is_an_integrity_error_and_none_of_them_stay(
    session: Session,
) -> None:
    """On PostgreSQL a small batch's writes are answered together, at the pipeline's end:
    the refusal must still reach the caller as ``IntegrityError`` (a capture retries on
    it), and the rows sent before it must not stay."""
    contact = _person(session)

    def refused_batch() -> None:
        with session.begin_nested(), batched_writes(session):
            add_later(session, _change(contact, "mql"))
            add_row_later(session, LeadScore, _score_row(contact, 1))
            add_row_later(session, LeadScore, _score_row(contact, 2))

    with pytest.raises(IntegrityError):
        refused_batch()
    assert _changes(session, contact) == []
    assert session.get(LeadScore, contact.id) is None


def test_on_postgresql_a_small_batch_is_written_in_one_pipeline(session: Session) -> None:
    """Every INSERT and UPDATE of a small batch is sent before any answer is read (one
    round trip, not one or two per table); a table of more than ``PIPELINED_ROWS`` goes by
    COPY, which a pipeline cannot carry, so that batch is sent statement by statement."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite is in the process: there is no round trip to save")
    contact = _person(session)
    seen: list[tuple[str, bool]] = []

    def note(_conn: Any, cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append((statement.split(" (")[0], bool(cursor.connection.pgconn.pipeline_status)))

    event.listen(session.get_bind(), "before_cursor_execute", note)
    try:
        with batched_writes(session):
            add_later(session, _change(contact, "mql"))
            add_row_later(session, LeadScore, _score_row(contact, 1))
            set_later(session, contact, {"company": "Piped"})
        small = list(seen)
        seen.clear()
        with batched_writes(session):
            for n in range(PIPELINED_ROWS + 1):
                add_later(session, _change(contact, f"stage-{n}"))
            set_later(session, contact, {"company": "Copied"})
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", note)
    assert sorted(small) == [
        ("INSERT INTO lead_score", True),
        ("INSERT INTO stage_change", True),
        ("UPDATE contact SET company = %s, updated_at = %s WHERE id = %s", True),
    ]
    assert seen == [
        ("COPY stage_change", False),
        ("UPDATE contact SET company = %s, updated_at = %s WHERE id = %s", False),
    ]
    session.expire_all()
    assert len(_changes(session, contact)) == PIPELINED_ROWS + 2
    stored = session.get(Contact, contact.id)
    assert stored is not None and stored.company == "Copied"


def test_writes_with_the_held_rows_come_before_or_after_them_and_only_if_the_batch_ends_well(
    session: Session,
) -> None:
    contact = _person(session)
    done: list[int] = []
    assert with_held_rows(session, lambda: done.append(0)) is False  # outside: write now
    with _statements(session) as seen, batched_writes(session):
        add_later(session, _change(contact, "mql"))
        assert with_held_rows(session, lambda: done.append(len(seen)))
        assert done == []
    assert done == [len(seen)] and "INSERT INTO stage_change" in seen  # after the rows
    with _statements(session) as seen, batched_writes(session):
        add_later(session, _change(contact, "sql"))
        with_held_rows(session, lambda: done.append(len(seen)), first=True)
    assert done[-1] == 0 and "INSERT INTO stage_change" in seen  # before them

    def failing_batch() -> None:
        with batched_writes(session):
            with_held_rows(session, lambda: done.append(-1))
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        failing_batch()
    assert -1 not in done


def test_events_of_a_batch_go_with_its_rows_behind_the_publishers_lock(session: Session) -> None:
    """On PostgreSQL the publishers' lock goes first in the batch's pipeline and the events'
    INSERT last, as an executemany however many events there are (a pipeline cannot carry a
    COPY); the events are stored in publishing order on both backends."""
    contact = _person(session)
    seen: list[tuple[str, bool]] = []
    postgres = session.get_bind().dialect.name == "postgresql"
    count = PIPELINED_ROWS + 1

    def note(_conn: Any, cursor: Any, statement: str, *_rest: Any) -> None:
        piped = postgres and bool(cursor.connection.pgconn.pipeline_status)
        seen.append((statement.split(" (")[0], piped))

    event.listen(session.get_bind(), "before_cursor_execute", note)
    try:
        with batched_writes(session), outbox.held_until_done(session):
            add_later(session, _change(contact, "mql"))
            for n in range(count):
                outbox.publish(
                    session, topic="lead-capture", event_type="lead.processed",
                    tenant_id="t", payload={"n": n},
                )  # fmt: skip
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", note)
    lock = [("SELECT pg_advisory_xact_lock(%s)", True)] if postgres else []
    assert seen == [
        *lock,  # before any row: batches queue on it, not on each other's rows
        ("INSERT INTO stage_change", postgres),
        ("INSERT INTO outbox_event", postgres),
    ]
    stored = session.scalars(
        select(OutboxEvent.payload).order_by(OutboxEvent.seq.desc()).limit(count)
    ).all()
    assert [p["n"] for p in reversed(stored)] == list(range(count))
