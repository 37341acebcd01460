"""Captures running side by side on PostgreSQL (several API processes, several imports):
they share new accounts without waiting for each other, and wait for each other only over
the same person. These tests commit, on the real engine; SQLite has one writer at a time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from revhub.contacts.models import Account, IdentityClaim
from revhub.contacts.service import _store_accounts, get_or_create_accounts, identities_claimed
from revhub.core.db import utcnow


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
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: the account is the caller's to commit")
    with Session(engine) as first:
        mine = get_or_create_accounts(first, names={domain: "Acme"})[domain].id
        with Session(engine) as second:
            second.execute(text("SET LOCAL lock_timeout = '1s'"))
            theirs = get_or_create_accounts(second, names={domain: "Acme"})[domain]
            assert theirs.id == mine
        first.rollback()
    with Session(engine) as session:
        assert session.scalars(select(Account.id).where(Account.domain == domain)).all() == [mine]


def test_a_new_account_held_up_by_a_lock_falls_back_to_the_callers_transaction(
    engine: Engine, domain: str
) -> None:
    """Its own transaction waits at most ACCOUNT_LOCK_WAIT; then the insert runs in the
    caller's, where PostgreSQL sees any wait cycle (here the caller's lock timeout ends it)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL gives a new account a transaction of its own")
    with Session(engine) as setup, setup.begin():
        get_or_create_accounts(setup, names={domain: "Acme"})
    row = {"id": uuid.uuid4(), "domain": domain, "name": "Acme", "created_at": utcnow()}
    with Session(engine) as holder, Session(engine) as caller:
        holder.execute(update(Account).where(Account.domain == domain).values(name="Acme Inc"))
        caller.execute(text("SET LOCAL lock_timeout = '500ms'"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            _store_accounts(caller, [row])
        assert time.monotonic() - started >= 2.0, "its own transaction waited first"
        holder.rollback()


def test_a_capture_naming_a_person_another_capture_holds_waits_and_others_do_not(
    engine: Engine,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing to claim")
    mine = ("email", uuid.uuid4().hex)
    with Session(engine) as first, Session(engine) as second:
        with identities_claimed(first, [mine, ("anonymous", uuid.uuid4().hex)]):
            second.execute(text("SET LOCAL lock_timeout = '300ms'"))
            with identities_claimed(second, [("email", uuid.uuid4().hex)]):
                pass
            with (
                pytest.raises(OperationalError, match="lock timeout"),
                identities_claimed(second, [("email", uuid.uuid4().hex), mine]),
            ):
                pass
            second.rollback()
        assert first.scalar(select(func.count()).select_from(IdentityClaim)) == 0, (
            "claims are gone before the claiming transaction commits"
        )
        first.commit()
        with identities_claimed(second, [mine]):
            pass
        second.commit()
