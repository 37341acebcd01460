"""Captures running side by side on PostgreSQL (several API processes, several imports):
they share new accounts without waiting for each other, and wait for each other only over
the same person. These tests commit, on the real engine; SQLite has one writer at a time."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from revhub.contacts.models import Account
from revhub.contacts.pii import pii_for
from revhub.contacts.service import (
    _store_accounts_apart,
    claim_identities,
    get_or_create_accounts,
)
from revhub.core.db import utcnow
from revhub.core.settings import Settings
from revhub.sales.service import despite_twins
from revhub.sales.touchpoints import add_touchpoints


@pytest.fixture(autouse=True)
def _postgresql_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: captures never run side by side")


@pytest.fixture
def domain(engine: Engine) -> Iterator[str]:
    """A domain no other test names; its account is removed afterwards (these tests commit)."""
    name = f"{uuid.uuid4().hex[:12]}.example"
    yield name
    with Session(engine) as session, session.begin():
        session.execute(delete(Account).where(Account.domain == name))


def test_on_postgresql_a_new_account_is_committed_at_once_in_a_transaction_of_its_own(
    engine: Engine, domain: str
) -> None:
    """A second capture naming the same new company neither waits for the first one's
    transaction (it would hold the domain until it ends) nor creates a twin; if the first
    then fails, the account stays."""
    with Session(engine) as first:
        mine = get_or_create_accounts(first, names={domain: "Acme"})[domain].id
        with Session(engine) as second:
            second.execute(text("SET LOCAL lock_timeout = '1s'"))
            theirs = get_or_create_accounts(second, names={domain: "Acme"})[domain]
            assert theirs.id == mine
        first.rollback()
    with Session(engine) as session:
        assert session.scalars(select(Account.id).where(Account.domain == domain)).all() == [mine]


def test_a_new_account_not_apart_is_the_callers_and_a_twin_waits_for_it(
    engine: Engine, domain: str
) -> None:
    """``apart=False`` (the capture process): the account comes back from the insert in the
    caller's transaction, and goes if it rolls back; a second capture naming the same new
    company meanwhile waits for the first and then reads its row."""
    with Session(engine) as first:
        mine = get_or_create_accounts(first, names={domain: "Acme"}, apart=False)[domain]
        assert mine in first and mine.name == "Acme"
        first.rollback()
    with Session(engine) as session:
        assert session.scalars(select(Account).where(Account.domain == domain)).all() == []
    found: list[uuid.UUID] = []

    def second() -> None:
        with Session(engine) as session:
            account = get_or_create_accounts(session, names={domain: "Acme"}, apart=False)
            found.append(account[domain].id)
            session.commit()

    with Session(engine) as first:
        mine_id = get_or_create_accounts(first, names={domain: "Acme"}, apart=False)[domain].id
        waiter = threading.Thread(target=second, daemon=True)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "the second capture waits for the first one's insert"
        first.commit()
        waiter.join(5)
    assert found == [mine_id]


def test_a_capture_ended_by_a_deadlock_runs_again_and_other_errors_do_not(
    engine: Engine, domain: str
) -> None:
    """PostgreSQL ends one side of a deadlock (SQLSTATE 40P01); that side runs again."""
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) == 1:
            _deadlock(engine, domain)
        return "captured"

    assert despite_twins(attempt) == "captured"
    assert len(calls) == 2

    def timed_out() -> str:
        calls.append(1)
        with Session(engine) as session:
            session.execute(text("SET LOCAL statement_timeout = '1ms'"))
            session.execute(text("SELECT pg_sleep(1)"))
        return "unreachable"

    calls.clear()
    with pytest.raises(OperationalError, match="statement timeout"):
        despite_twins(timed_out)
    assert len(calls) == 1


def _deadlock(engine: Engine, domain: str) -> None:
    """Two transactions each updating the row the other updated first; this thread's
    checks for a deadlock first (its ``deadlock_timeout`` is the shorter), so it is the
    one PostgreSQL ends, with the ``OperationalError`` raised here."""
    names = [f"a.{domain}", f"b.{domain}"]
    with Session(engine) as setup, setup.begin():
        get_or_create_accounts(setup, names={n: n for n in names})
    holding = threading.Event()

    def other() -> None:
        with Session(engine) as session:
            session.execute(text("SET LOCAL deadlock_timeout = '10s'"))
            _rename(session, names[1])
            holding.set()
            _rename(session, names[0])
            session.commit()

    try:
        with Session(engine) as session:
            session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            _rename(session, names[0])
            thread = threading.Thread(target=other, daemon=True)
            thread.start()
            assert holding.wait(5)
            time.sleep(0.2)
            _rename(session, names[1])
    finally:
        thread.join(5)
        with Session(engine) as cleanup, cleanup.begin():
            cleanup.execute(delete(Account).where(Account.domain.in_(names)))


def _rename(session: Session, domain: str) -> None:
    session.execute(update(Account).where(Account.domain == domain).values(name="renamed"))


def test_a_new_account_held_up_by_a_lock_falls_back_to_the_callers_transaction(
    engine: Engine, domain: str
) -> None:
    """Its own transaction waits at most ACCOUNT_LOCK_WAIT; then the insert runs in the
    caller's, where PostgreSQL sees any wait cycle (here the caller's lock timeout ends it)."""
    with Session(engine) as setup, setup.begin():
        get_or_create_accounts(setup, names={domain: "Acme"})
    row = {"id": uuid.uuid4(), "domain": domain, "name": "Acme", "created_at": utcnow()}
    with Session(engine) as holder, Session(engine) as caller:
        holder.execute(update(Account).where(Account.domain == domain).values(name="Acme Inc"))
        caller.execute(text("SET LOCAL lock_timeout = '500ms'"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            _store_accounts_apart(caller, engine, [row])
        assert time.monotonic() - started >= 2.0, "its own transaction waited first"
        holder.rollback()


def test_a_capture_naming_a_person_another_capture_holds_waits_and_others_do_not(
    engine: Engine,
) -> None:
    mine = ("email", uuid.uuid4().hex)
    with Session(engine) as first, Session(engine) as second:
        claim_identities(first, [mine, ("anonymous", uuid.uuid4().hex)])
        second.execute(text("SET LOCAL lock_timeout = '300ms'"))
        claim_identities(second, [("email", uuid.uuid4().hex)])
        with pytest.raises(OperationalError, match="lock timeout"):
            claim_identities(second, [("email", uuid.uuid4().hex), mine])
        second.rollback()
        first.rollback()


def test_a_waiting_capture_goes_on_when_the_holder_commits_or_its_savepoint_rolls_back(
    engine: Engine,
) -> None:
    mine = ("email", uuid.uuid4().hex)
    with Session(engine) as first:
        first.execute(text("SELECT 1"))
        savepoint = first.begin_nested()
        claim_identities(first, [mine])
        waiter = _claim_in_a_thread(engine, mine)
        assert not waiter.wait(0.3), "the second capture waits while the claim is held"
        savepoint.rollback()  # as capture_batch's retry does
        assert waiter.wait(5), "a rolled-back savepoint gives its claims up"
        claim_identities(first, [mine])
        waiter = _claim_in_a_thread(engine, mine)
        assert not waiter.wait(0.3)
        first.commit()
        assert waiter.wait(5), "the claim ends with the holder's transaction"


def _claim_in_a_thread(engine: Engine, identity: tuple[str, str]) -> threading.Event:
    """Claim ``identity`` on a connection of its own; the event is set once it holds it."""
    done = threading.Event()

    def claim() -> None:
        with Session(engine) as session:
            claim_identities(session, [identity])
            done.set()
            session.rollback()

    threading.Thread(target=claim, daemon=True).start()
    return done


def test_touchpoints_for_a_new_visitor_wait_for_a_capture_claiming_them(
    engine: Engine, settings: Settings
) -> None:
    """A touchpoint batch may start an anonymous profile: it claims the visitor too, so it
    waits for a capture naming them rather than both creating one."""
    visitor = uuid.uuid4().hex
    touch = {"anonymous_id": visitor, "channel": "web", "kind": "web_session"}
    touch["occurred_at"] = utcnow().isoformat()
    with Session(engine) as capture, Session(engine) as batch:
        claim_identities(capture, [("anonymous", visitor)])
        batch.execute(text("SET LOCAL lock_timeout = '300ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            add_touchpoints(batch, pii_for(settings), items=[touch])
        batch.rollback()
        capture.rollback()
