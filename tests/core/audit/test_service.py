"""The audit chain: appends link up; any edit, insertion or deletion is detected."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from revhub.core.audit import service as audit
from revhub.core.audit.models import AuditEntry
from revhub.core.db import utcnow

KEY = b"audit-key-for-tests-0123456789abcdef"


def _event(i: int) -> audit.AuditEvent:
    return audit.AuditEvent(
        occurred_at=utcnow() + timedelta(seconds=i),
        actor=f"user-{i}",
        action="POST /x",
        resource_type="keys",
        outcome="success",
        resource_id=str(i),
        status_code=201,
    )


def _append(session: Session, n: int) -> list[audit.Sealed]:
    return [audit.record(session, key=KEY, event=_event(i)) for i in range(n)]


def _first_seq(session: Session) -> int:
    return int(session.execute(text("SELECT min(seq) FROM audit_entry")).scalar_one())


def test_entries_chain_to_one_another(session: Session) -> None:
    entries = _append(session, 3)
    assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 3))
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    result = audit.verify(session, key=KEY)
    assert result.ok and result.entries_checked >= 3


def test_a_group_of_events_is_sealed_into_the_chain_in_order(session: Session) -> None:
    """Leads captured together each keep their own entry, sealed one after the other."""
    before = _append(session, 1)[0]
    group = audit.record_many(session, key=KEY, events=[_event(i) for i in range(1, 4)])
    assert [e.seq for e in group] == [before.seq + 1, before.seq + 2, before.seq + 3]
    assert [e.prev_hash for e in group] == [before.hash, group[0].hash, group[1].hash]
    stored = session.scalars(select(AuditEntry.actor).where(AuditEntry.seq > before.seq))
    assert sorted(stored) == ["user-1", "user-2", "user-3"]
    assert audit.verify(session, key=KEY).ok
    assert audit.record_many(session, key=KEY, events=[]) == []


def test_an_edited_row_is_detected(session: Session) -> None:
    entries = _append(session, 4)
    session.execute(
        update(AuditEntry).where(AuditEntry.seq == entries[1].seq).values(actor="someone-else")
    )
    session.expire_all()
    result = audit.verify(session, key=KEY)
    assert not result.ok
    assert [p.seq for p in result.problems] == [entries[1].seq]
    assert "changed" in result.problems[0].problem


def test_a_deleted_row_is_detected(session: Session) -> None:
    entries = _append(session, 4)
    session.execute(delete(AuditEntry).where(AuditEntry.seq == entries[2].seq))
    result = audit.verify(session, key=KEY)
    assert not result.ok
    assert any("missing" in p.problem for p in result.problems)


def test_deleting_the_newest_rows_is_detected(session: Session) -> None:
    entries = _append(session, 3)
    session.execute(delete(AuditEntry).where(AuditEntry.seq >= entries[1].seq))
    result = audit.verify(session, key=KEY)
    assert not result.ok
    assert "head" in result.problems[-1].problem


def test_a_rehashed_forgery_without_the_key_is_detected(session: Session) -> None:
    entries = _append(session, 2)
    forged = audit._seal(b"attacker-guess", entries[1].seq, entries[1].prev_hash, {"actor": "x"})
    session.execute(update(AuditEntry).where(AuditEntry.seq == entries[1].seq).values(hash=forged))
    session.expire_all()
    assert not audit.verify(session, key=KEY).ok


def test_verifying_with_another_key_fails(session: Session) -> None:
    _append(session, 1)
    assert audit.verify(session, key=KEY).ok
    assert not audit.verify(session, key=b"another-key").ok
    assert _first_seq(session) >= 1
