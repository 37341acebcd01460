"""Reference data kept per process: what every capture batch reads and almost nothing changes.

The team (territories and reps), the campaigns and the scoring model are read by every
lead-capture batch, and a batch is often one lead: on PostgreSQL each read was a round trip
and on both backends a few dozen ORM objects built, a fifth of a single lead's cost. They
change when someone edits them over the API, a few times a day.

So each kind of such data has a **token** in ``reference_version``: a random value set anew
in the same transaction as any change to it. A process keeps the last value it loaded with
the token it loaded it at; a transaction reads all the tokens in one statement, and where
a token is still the one kept, the kept value is used. Tokens are random, not counters, so
two equal tokens mean the same content whichever database or transaction they come from (a
rolled-back change, a test's discarded transaction or a restored backup goes back to a
token whose content it also goes back to).

Changes are noticed where they are made: a flush that inserts, changes or deletes an
object of a watched model (:func:`watch`), or an ORM ``insert``/``update``/``delete``
statement on one, sets its kind's token. A change made outside the ORM (SQL typed into
``psql``, a data migration) must set the token too, to any new value, or processes keep
the old value until the next change through the API or a restart. So do Core statements
(``Connection.execute``, ``core.db``'s row writers): they are used only for columns no kept
value holds (the reps' lead counts, read each batch). Kept values are shared
by threads: they must be immutable (frozen dataclasses, tuples), or a mapping that only
fills with what is read under its token (the campaigns, by key).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import String, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column

from revhub.core.db import Base, once_per_transaction

T = TypeVar("T")


class ReferenceVersion(Base):
    __tablename__ = "reference_version"

    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))


_WATCHED: dict[type[Any], str] = {}
_KEPT: dict[str, tuple[str, Any]] = {}
_TOKENS = "revhub.reference_tokens"


def watch(kind: str, *models: type[Any]) -> None:
    """Changes to ``models`` (through the ORM) set ``kind``'s token."""
    for model in models:
        _WATCHED[model] = kind


def kept(session: Session, kind: str, load: Callable[[Session], T]) -> T:
    """``kind``'s value as of this transaction: the one this process kept if its token is
    still current, else ``load(session)``, kept for the next transaction. A kind with no
    token row (a database emptied by hand) is loaded every time."""
    if _unflushed(session, kind):
        return load(session)
    token = _tokens(session).get(kind)
    held = _KEPT.get(kind)
    if token is not None and held is not None and held[0] == token:
        value: T = held[1]
        return value
    value = load(session)
    if token is not None:
        _KEPT[kind] = (token, value)
    return value


def _unflushed(session: Session, kind: str) -> bool:
    """The session holds changes of ``kind`` not yet flushed: the load would flush them and
    read content no token stands for yet, so it is not kept."""
    return kind in _pending_kinds(session)


def _pending_kinds(session: Session) -> set[str]:
    """The kinds of the watched objects the session has added, changed or deleted (until a
    flush has written them)."""
    return {
        _WATCHED[type(row)]
        for rows in (session.new, session.dirty, session.deleted)
        for row in rows
        if type(row) in _WATCHED
    }


def _tokens(session: Session) -> dict[str, str]:
    """Every kind's token, read once per transaction (read again after the transaction
    renews one, see :func:`_renew`)."""
    return once_per_transaction(
        session, _TOKENS, lambda: dict(session.connection().execute(_ALL_TOKENS).all())
    )


_ALL_TOKENS = select(ReferenceVersion.kind, ReferenceVersion.token)


@event.listens_for(Session, "after_flush")
def _changed(session: Session, _context: Any) -> None:
    """A flush that wrote objects of watched models: new tokens for their kinds."""
    _renew(session, _pending_kinds(session))


@event.listens_for(Session, "do_orm_execute")
def _changed_by_statement(state: ORMExecuteState) -> None:
    """An ORM ``insert``/``update``/``delete`` statement on a watched model (not a flush):
    new tokens too."""
    mapper = state.bind_mapper
    if mapper is None or not (state.is_insert or state.is_update or state.is_delete):
        return
    if mapper.class_ in _WATCHED:
        _renew(state.session, {_WATCHED[mapper.class_]})


def _renew(session: Session, kinds: set[str]) -> None:
    """Give each of ``kinds`` a new token, in the session's transaction."""
    if not kinds:
        return
    connection = session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    for kind in sorted(kinds):
        token = uuid.uuid4().hex
        statement = dialect.insert(ReferenceVersion).values(kind=kind, token=token)
        connection.execute(
            statement.on_conflict_do_update(index_elements=["kind"], set_={"token": token})
        )
    session.info.pop(_TOKENS, None)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, _previous: Any) -> None:
    """A rollback (of a savepoint too) may undo a token this transaction set: read them
    again when next asked."""
    session.info.pop(_TOKENS, None)
