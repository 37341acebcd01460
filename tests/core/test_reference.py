"""Reference data kept per process: loaded again exactly when its token changes."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from revhub.core import reference
from revhub.core.db import Database
from revhub.sales.assignment import TEAM
from revhub.sales.models import SalesRep


def _counting() -> tuple[list[int], Callable[[Session], int]]:
    """A loader that returns how many reps are active, and a list of each load's result."""
    loads: list[int] = []

    def load(session: Session) -> int:
        active = session.query(SalesRep).filter(SalesRep.active.is_(True)).count()
        loads.append(active)
        return active

    return loads, load


def _add_rep(session: Session, name: str) -> SalesRep:
    rep = SalesRep(name=name, email=f"{name}@reps.example")
    session.add(rep)
    session.flush()
    return rep


def test_a_kept_value_is_loaded_again_only_after_a_change(db: Database) -> None:
    loads, load = _counting()
    with db.transaction() as session:
        _add_rep(session, "ada")
    for _ in range(3):
        with db.transaction() as session:
            assert reference.kept(session, TEAM, load) == 1
    assert loads == [1]
    with db.transaction() as session:
        _add_rep(session, "grace")
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) == 2
    assert loads == [1, 2]


def test_a_change_is_seen_in_the_transaction_that_makes_it(db: Database) -> None:
    loads, load = _counting()
    with db.transaction() as session:
        before = reference.kept(session, TEAM, load)
        loaded = len(loads)  # 0 if an earlier test kept the team at this token
        rep = _add_rep(session, "linus")
        assert reference.kept(session, TEAM, load) == before + 1
        rep.active = False
        session.flush()
        assert reference.kept(session, TEAM, load) == before
    assert len(loads) == loaded + 2


def test_a_rolled_back_change_goes_back_to_what_was_kept(db: Database) -> None:
    _loads, load = _counting()
    with db.transaction() as session:
        kept = reference.kept(session, TEAM, load)
        savepoint = session.begin_nested()
        _add_rep(session, "ken")
        assert reference.kept(session, TEAM, load) == kept + 1
        savepoint.rollback()
        assert reference.kept(session, TEAM, load) == kept
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) == kept


def test_an_orm_statement_on_a_watched_model_is_a_change(db: Database) -> None:
    _loads, load = _counting()
    with db.transaction() as session:
        _add_rep(session, "margaret")
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) >= 1
    with db.transaction() as session:
        session.execute(update(SalesRep).values(active=False))
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) == 0


def test_another_process_change_is_seen_by_its_token(db: Database) -> None:
    """Another process's change comes with a new token, and what this one kept is dropped.
    A change without one (SQL typed by hand) is not seen: the documented contract."""
    _loads, load = _counting()
    with db.transaction() as session:
        _add_rep(session, "barbara")
    with db.transaction() as session:
        kept = reference.kept(session, TEAM, load)
    with db.transaction() as session:
        session.execute(text("UPDATE sales_rep SET active = false"))
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) == kept
    with db.transaction() as session:
        session.execute(
            text("UPDATE reference_version SET token = 'set-by-another' WHERE kind = :kind"),
            {"kind": TEAM},
        )
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) == 0


def test_a_kind_without_a_token_is_loaded_every_time(db: Database) -> None:
    loads, load = _counting()
    for _ in range(2):
        with db.transaction() as session:
            reference.kept(session, "never-watched", load)
    assert len(loads) == 2


def test_a_value_read_over_unflushed_changes_is_not_kept(db: Database) -> None:
    """Loading would flush them: content no token stands for yet (and that a rollback may
    undo), so it is used by this transaction only."""
    loads, load = _counting()
    with db.transaction() as session:
        before = reference.kept(session, TEAM, load)
    loaded = len(loads)  # 0 if an earlier test kept the team at this token
    try:
        with db.transaction() as session:
            session.add(SalesRep(name="dennis", email="dennis@reps.example"))
            assert reference.kept(session, TEAM, load) == before + 1
            raise RuntimeError("roll it back")
    except RuntimeError:
        pass
    with db.transaction() as session:
        assert reference.kept(session, TEAM, load) == before
    assert loads[loaded:] == [before + 1]
