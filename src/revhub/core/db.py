"""Database plumbing shared by every domain: declarative base, column types, engine, sessions.

The entry point owns the transaction (DESIGN.md §9.1): :meth:`Database.transaction` is what a
request, a job or a CLI command opens; service functions only ``flush()``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any, Literal, TypeVar

import orjson
import structlog

try:
    import fcntl
except ImportError:  # Windows: no flock; processes sharing a file meet at SQLite's own lock
    fcntl = None  # type: ignore[assignment]
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    event,
    inspect,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.session import make_transient_to_detached
from sqlalchemy.types import TypeDecorator, TypeEngine
from uuid_utils.compat import uuid7

from revhub.core.errors import NotFound

log = structlog.get_logger("revhub.db")

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A new row id: a UUID version 7 (RFC 9562), random but for its first 48 bits, the
    millisecond it was made (and rising within this process). Rows stored together sit
    together in every index on their id, so a batch's inserts dirty a few index pages
    instead of about one a row, as random (version 4) ids did; SQLite writes each dirtied
    page whole to its WAL at commit (``bench/service_cost.py``'s KiB written per item). An
    id so tells roughly when its row was made, which the row's own times tell anyway."""
    return uuid7()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, the text SQLAlchemy's DATETIME stores (``2026-03-01 12:30:00.000000``)
        made in one step by ``isoformat``: a bulk request binds tens of thousands of times,
        and the two processors in a row (this type's, then the dialect's formatting) were a
        fortieth of its time."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        to_utc = self.process_bind_param

        def process(value: datetime | None) -> str | None:
            utc = to_utc(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CENT = Decimal("0.01")


class Money(TypeDecorator[Decimal]):
    """An exact amount with 2 decimal places (18 digits): NUMERIC(18, 2) on PostgreSQL, text on
    SQLite, whose NUMERIC goes through a float and would round 9999999999999999.99 up."""

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(24))
        return dialect.type_descriptor(Numeric(18, 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = Decimal(value).quantize(CENT)
        return str(exact) if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value)).quantize(CENT)


SeqType = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit sequence number (SQLite autoincrements only INTEGER primary keys)."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


SQLITE_POOL_SIZE = 48
"""Connections an embedded hub keeps open: one for each thread that may use the database
at once (FastAPI's 40 threads, authenticating; the lead-capture thread; the worker's
consumers and chores). With SQLAlchemy's default of 5, most requests under load opened
and closed a connection of their own (with its PRAGMAs) to check their API key. An idle
SQLite connection costs a file handle and its page cache."""


def json_text(value: Any) -> str:
    """What a JSON column stores, through orjson: a batch writes the steps, score reasons
    and event payloads of thousands of rows, and the standard library's encoder was a
    twentieth of a bulk request (orjson takes about a tenth of its time). Keys that are not
    strings are written as strings, as ``json.dumps`` does; what orjson refuses (an integer
    past 64 bits, valid in a touchpoint's ``meta``) goes through ``json.dumps``. Reading
    stays with the standard library: orjson would read such an integer as a float."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs to behave like the other.

    SQLite: foreign keys on, WAL, transactions that queue for the write lock (see
    :class:`WriteGate`), and connections usable from FastAPI's worker threads.
    """
    kwargs.setdefault("json_serializer", json_text)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if "poolclass" not in kwargs and ":memory:" not in url:
            kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
        engine = create_engine(url, **kwargs)
        database = engine.url.database
        in_memory = not database or database == ":memory:" or "mode=memory" in url
        gate = WriteGate(None if in_memory else f"{database}-writer.lock")
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", gate.begin)
        event.listen(engine, "commit", gate.end)
        event.listen(engine, "rollback", gate.end)
        event.listen(engine, "engine_disposed", gate.close)
        if not in_memory:
            checkpoints = WalCheckpoints(engine)
            event.listen(engine, "commit", checkpoints.wrote)
            event.listen(engine, "engine_disposed", checkpoints.stop)
            checkpoints.start()
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # WalCheckpoints does it
    cursor.close()


WAL_CHECKPOINT_SECONDS = 0.5


class WalCheckpoints:
    """Copies SQLite's write-ahead log back into the database file from a thread of its own,
    half a second after a commit, instead of in the commit that filled the log past 1,000
    pages.

    That commit (SQLite's automatic checkpoint) copied and synced the pages of the
    transactions before it, some 20 ms of each 1,000-touchpoint request; here it
    happens beside the requests, on the other core (the driver lets go of the GIL while
    SQLite works). PASSIVE: it never waits for or blocks a writer or reader; a writer starts
    the log over once all of it is copied."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._due = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wrote(self, _connection: Any = None) -> None:
        self._due.set()

    def stop(self, _engine: Any = None) -> None:
        self._stopped.set()
        self._due.set()

    def _run(self) -> None:
        while self._due.wait() and not self._stopped.wait(WAL_CHECKPOINT_SECONDS):
            self._due.clear()
            try:
                connection = self._engine.raw_connection()
                try:
                    connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    connection.close()
            except Exception as exc:  # tried again after the next commit; the log only grows
                log.warning("sqlite_checkpoint_failed", error=str(exc))


READ_ONLY = "revhub_read_only"
"""Execution option of :meth:`Database.reading` sessions: on SQLite they begin a deferred
transaction and never queue at the :class:`WriteGate`."""


class WriteGate:
    """Take SQLite's write lock at BEGIN (SQLAlchemy's pysqlite recipe, made IMMEDIATE),
    queueing first on a lock inside the process, then on a lock file beside the database.

    pysqlite's own transaction handling breaks SAVEPOINT; and a deferred transaction that
    reads and then writes can fail at once with SQLITE_BUSY when another writer got there
    first. SQLite has one writer at a time anyway, so each transaction queues for it up front
    and never fails half-way.

    The queue is ours because SQLite's own one is a sleep-and-retry loop (1, 2, 5 … up to
    100 ms naps): with dozens of request threads waiting, the lock sat free while they
    slept, and at 200 leads/s offered the hub answered 3 a second. A thread waiting on the
    process's lock wakes the moment the previous transaction ends. Processes that share the
    database (the API and its lead-capture process, a CLI command) then meet at an
    ``flock`` on ``<database>-writer.lock``, looked at every half millisecond at most; the
    API's consumers had waited behind the capture process in SQLite's naps, up to 100 ms
    each. Past the timeout a transaction goes through to SQLite's busy timeout rather than
    wait for ever.
    """

    HELD = "revhub.write_gate"
    FILE_HELD = "revhub.write_gate_file"
    TIMEOUT_S = 30.0
    POLL_S = 0.0005

    def __init__(self, lock_path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._path = lock_path if fcntl is not None else None
        self._file: IO[bytes] | None = None

    def begin(self, conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        deadline = time.monotonic() + self.TIMEOUT_S
        conn.info[self.HELD] = self._lock.acquire(timeout=self.TIMEOUT_S)
        try:
            if conn.info[self.HELD] and self._opened() is not None:
                conn.info[self.FILE_HELD] = self._take_file(deadline)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.end(conn)
            raise

    def _opened(self) -> IO[bytes] | None:
        """The lock file, opened at the first write (not when the engine is made: its
        directory may not exist yet). One that cannot be opened (a read-only directory)
        leaves the processes to SQLite's own lock."""
        if self._file is None and self._path is not None:
            try:
                self._file = _lock_file(self._path)
            except OSError as exc:
                log.warning("sqlite_writer_lock_unavailable", path=self._path, error=str(exc))
                self._path = None
        return self._file

    def _take_file(self, deadline: float) -> bool:
        assert self._file is not None
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(self.POLL_S)

    def end(self, conn: Any) -> None:
        if conn.info.pop(self.FILE_HELD, False) and self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        if conn.info.pop(self.HELD, False):
            self._lock.release()

    def close(self, _engine: Any = None) -> None:
        """Close the lock file when the engine is disposed (opened again if it is used
        again)."""
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _lock_file(path: str) -> IO[bytes]:
    """The writers' lock file (created owner-only, kept open for the engine's life)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    return os.fdopen(descriptor, "r+b", buffering=0)


HELD_ROWS = "revhub.held_rows"


@dataclass
class _Held:
    inserts: dict[type[Any], list[Any]] = field(default_factory=dict)
    updates: dict[tuple[type[Any], tuple[Any, ...]], dict[str, Any]] = field(default_factory=dict)
    """Per row (model, primary key): its key and the values set on it, the last one winning."""
    first: list[Callable[[], object]] = field(default_factory=list)
    """Statements sent before the held rows (:func:`with_held_rows`: a lock)."""
    then: list[Callable[[], object]] = field(default_factory=list)
    """Writes made after the held rows (:func:`with_held_rows`)."""


@contextmanager
def batched_writes(session: Session) -> Iterator[None]:
    """Write the history rows (``add_later``) and counter updates (``set_later``) of a
    batch as one multi-row statement per table when the block ends, instead of one
    statement each at flush: a 1,000-lead batch adds some 10,000 such rows, and the ORM's
    unit of work spent most of the batch on them. Nothing is written if the block raises;
    nested blocks write when the outermost ends. Code inside that queries these tables
    (a merge moving a person's rows) calls :func:`write_held` first."""
    if session.info.get(HELD_ROWS) is not None:
        yield
        return
    session.info[HELD_ROWS] = _Held()
    try:
        yield
        write_held(session)
    finally:
        del session.info[HELD_ROWS]


def add_later(session: Session, row: Any) -> None:
    """``session.add`` for a new object, held inside :func:`batched_writes` for one multi-row
    INSERT per table with the held rows: the unit of work's per-object bookkeeping cost more
    than the database's work for the people and leads of a batch. Until it is written it is a
    plain object (the batch may still change it); once written it joins the session with
    every column loaded, so later changes are flushed as updates."""
    held: _Held | None = session.info.get(HELD_ROWS)
    if held is None:
        session.add(row)
        return
    held.inserts.setdefault(type(row), []).append(row)


def add_row_later(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """:func:`add_later` for a row given as ``{attribute: value}`` rather than an object: for
    what a batch writes by the thousand, where building ORM objects was most of the cost.
    Outside :func:`batched_writes` it is inserted at once."""
    held: _Held | None = session.info.get(HELD_ROWS)
    if held is None:
        session.flush()
        insert_rows(session, model, [values])
        return
    held.inserts.setdefault(model, []).append(values)


def set_row_later(
    session: Session, model: type[Any], key: dict[str, Any], values: dict[str, Any]
) -> None:
    """:func:`set_later` for a row named by its primary key (``{attribute: value}``) with no
    object loaded. Inside :func:`batched_writes` it is written after the held inserts, so
    it may update a row :func:`add_row_later` holds; outside, at once."""
    held: _Held | None = session.info.get(HELD_ROWS)
    if held is None:
        session.execute(update(model), [key | values])
        return
    held.updates.setdefault((model, tuple(key.values())), dict(key)).update(values)


def set_later(session: Session, row: Any, values: dict[str, Any]) -> None:
    """Set ``values`` on a stored ``row``; inside :func:`batched_writes` the UPDATE joins
    one executemany per table (the object shows the new values at once)."""
    held: _Held | None = session.info.get(HELD_ROWS)
    state = inspect(row)
    if held is None or not state.persistent:
        for name, value in values.items():
            setattr(row, name, value)
        return
    for name, value in values.items():
        set_committed_value(row, name, value)
    mapper = state.mapper
    names = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    key = {name: getattr(row, name) for name in names}
    held.updates.setdefault((mapper.class_, tuple(key.values())), key).update(values)


def with_held_rows(session: Session, write: Callable[[], object], *, first: bool = False) -> bool:
    """Inside :func:`batched_writes`, ``write()`` is called when the held rows are written:
    after them, or before them with ``first`` (a lock that every writer of these rows takes
    first, so that no two batches wait on each other's rows). On PostgreSQL it goes in the
    same pipeline, so it must read no result: :func:`insert_rows`, :func:`update_rows`,
    :func:`send_unread`, or a Core statement whose result is left unread (an error surfaces
    at the pipeline's end). Outside, False: the caller writes at once."""
    held: _Held | None = session.info.get(HELD_ROWS)
    if held is None:
        return False
    (held.first if first else held.then).append(write)
    return True


def write_held(session: Session) -> None:
    """Flush the session, then write what :func:`add_later` and :func:`set_later` hold: the
    inserts table by table in foreign-key order (a person before their lead and history),
    then the updates; the held objects then join the session.

    On PostgreSQL, when no table holds more than ``PIPELINED_ROWS`` (a batch of single
    leads: a dozen tables of a few rows each), every statement goes in one pipeline: sent
    at once and answered together, one round trip instead of one or two per table (a COPY
    took about 0.35 ms of a one-lead batch's 8 ms, the server's work a small part of it)."""
    session.flush()
    held: _Held | None = session.info.get(HELD_ROWS)
    if held is None:
        return
    order = _table_order()
    inserts = [(m, held.inserts[m]) for m in sorted(held.inserts, key=lambda m: order[m.__table__])]
    updates: dict[type[Any], list[dict[str, Any]]] = {}
    for (model, _key), change in held.updates.items():
        updates.setdefault(model, []).append(change)
    small = all(len(rows) <= PIPELINED_ROWS for _, rows in inserts)
    with pipelined(session.connection(), small):
        for write in held.first:
            write()
        for model, rows in inserts:
            complete = [row if isinstance(row, dict) else _complete(row) for row in rows]
            insert_rows(session, model, complete)
        for model, changes in updates.items():
            update_rows(session, model, changes)
        for write in held.then:
            write()
    join_as_stored(
        session, (row for _, rows in inserts for row in rows if not isinstance(row, dict))
    )
    held.inserts.clear()
    held.updates.clear()
    held.first.clear()
    held.then.clear()


PIPELINED_ROWS = 100
"""PostgreSQL: a table's rows up to this many are sent as an executemany of INSERTs (which
a pipeline can carry); more go by ``COPY``, whose fixed cost is a round trip more but whose
rows cost the server a fraction of an INSERT's (a bulk batch's thousands), unless a
pipeline is open already (a small batch's events, written after its rows)."""


@contextmanager
def pipelined(connection: Connection, wanted: bool = True) -> Iterator[None]:
    """On PostgreSQL (if ``wanted``), the statements :func:`insert_rows` and
    :func:`update_rows` send inside the block go in one pipeline, their outcomes read
    when it ends; a refusal is raised there, as SQLAlchemy's error. Nothing inside may
    read a result. Elsewhere, and nested, it does nothing."""
    if not wanted or connection.dialect.name != "postgresql" or _in_pipeline(connection):
        yield
        return
    dbapi = connection.dialect.loaded_dbapi
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error) from exc


def _in_pipeline(connection: Connection) -> bool:
    """A pipeline is open on ``connection``'s driver connection (PostgreSQL): it cannot
    carry a COPY."""
    driver = connection.connection.driver_connection
    return bool(driver.pgconn.pipeline_status)  # type: ignore[union-attr]


_table_orders: dict[int, dict[Table, int]] = {}


def _table_order() -> dict[Table, int]:
    """Each table's place in foreign-key order (a table after those it refers to)."""
    count = len(Base.metadata.tables)
    if count not in _table_orders:
        _table_orders[count] = {t: i for i, t in enumerate(Base.metadata.sorted_tables)}
    return _table_orders[count]


def _complete(row: Any) -> dict[str, Any]:
    """A held object's row, every column in the table's order: the columns it left unset
    get their default (else None) on the object too, so the object holds what is stored
    and nothing is read back once it joins the session. A server-side default would be
    overridden, so such a column must be set."""
    state = inspect(row)
    table: Table = state.mapper.local_table
    values = {}
    for attr in state.mapper.column_attrs:
        if attr.key not in state.dict:
            column = attr.columns[0]
            if column.server_default is not None:
                raise ValueError(f"add_later on {table.name}: set {column.name} (server default)")
            default = column.default
            value = None if default is None else _column_default(table, column, default)(None)
            set_committed_value(row, attr.key, value)
        values[attr.key] = state.dict[attr.key]
    return values


def join_as_stored(session: Session, objects: Iterable[Any]) -> None:
    """Objects whose rows were written outside the unit of work (Core statements) join
    ``session`` as stored ones: later changes to them are UPDATEs, not a second INSERT."""
    for obj in objects:
        make_transient_to_detached(obj)
        session.add(obj)


def insert_rows(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (mapped attribute → value; Python-side column defaults fill what a row
    leaves out) into ``model``'s table, straight through the driver.

    For the append-only rows a batch writes by the thousand (history, touchpoints, events):
    SQLAlchemy's own executemany builds each row's parameters through the compiled statement,
    which cost more than the database's work. Here each value goes through its column type's
    bind processor and nothing else, so what is stored is what the ORM would store. SQLite
    takes one executemany of a prepared statement; PostgreSQL one ``COPY … FROM STDIN`` per
    table, which took a quarter of the time (and of the client's CPU) of multi-row VALUES
    for 3,000 events. A callable column default is called without an execution context
    (``new_id``, ``utcnow``, ``dict`` need none); one that reads the row's other values would
    need the ORM path. Nothing is read back: the caller gives any key it needs afterwards."""
    if not rows:
        return
    connection = session.connection()
    for plan, values in _planned(connection, model, rows, "insert"):
        if connection.dialect.name != "postgresql":
            connection.exec_driver_sql(plan.statement, values)
        elif len(values) > PIPELINED_ROWS and not _in_pipeline(connection):
            _send(connection, plan.copy, values, copy=True)
        else:
            _send(connection, plan.statement, values)


def send_unread(session: Session, statement: str, values: tuple[Any, ...]) -> None:
    """``statement`` (the driver's paramstyle) with ``values``, its result not read: inside
    :func:`pipelined` on PostgreSQL it waits for nothing (a lock taken on the way)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _send(connection, statement, [values])
    else:
        connection.exec_driver_sql(statement, values)


def update_rows(session: Session, model: type[Any], changes: list[dict[str, Any]]) -> None:
    """UPDATE rows of ``model`` named by primary key (each change: the key's attributes and
    the values to set), one executemany per set of columns, straight through the driver as
    :func:`insert_rows` does: the ORM's bulk update by primary key spent a twentieth of a
    touchpoint batch building the parameters of a thousand score rows. Columns with an
    ``onupdate`` the change leaves out get it, as the ORM would give it."""
    if not changes:
        return
    connection = session.connection()
    for plan, values in _planned(connection, model, changes, "update"):
        if connection.dialect.name == "postgresql":
            _send(connection, plan.statement, values)
        else:
            connection.exec_driver_sql(plan.statement, values)


def _planned(
    connection: Connection,
    model: type[Any],
    rows: list[dict[str, Any]],
    kind: Literal["insert", "update"],
) -> Iterator[tuple[_RowPlan, list[tuple[Any, ...]]]]:
    """Rows grouped by the attributes they give, each group with its statement's plan and
    parameters: one statement for each set of attributes."""
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(tuple(row), []).append(row)
    for keys, group in by_keys.items():
        plan = _row_plan(model, keys, connection.dialect, kind)
        yield plan, [plan.parameters(row) for row in group]


def _send(
    connection: Connection, statement: str, values: list[tuple[Any, ...]], *, copy: bool = False
) -> None:
    """``values`` to PostgreSQL straight through psycopg: an executemany of ``statement``, or
    with ``copy`` a ``COPY … FROM STDIN`` in text form (the server parses each value as its
    column's type). A refusal is raised as SQLAlchemy's error (an ``IntegrityError`` for a
    unique key), as a statement's would be, so callers' retries still see it; statement
    listeners hear of it before and after, as of any statement. The cursor is not closed:
    inside :func:`pipelined` its results come later, and a client-side cursor holds
    nothing on the server."""
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    told = (connection, cursor, statement, (), None, True)
    connection.dispatch.before_cursor_execute(*told)
    try:
        if copy:
            with cursor.copy(statement) as rows:
                for row in values:
                    rows.write_row(row)
        else:
            cursor.executemany(statement, values)
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
    connection.dispatch.after_cursor_execute(*told)


Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _RowPlan:
    """How rows given as ``{attribute: value}`` become a statement's parameters."""

    statement: str
    """``INSERT INTO table (columns) VALUES (?, ?, …)``: the given columns, then the
    defaulted; or ``UPDATE table SET given, defaulted WHERE keyed``."""
    copy: str
    """``COPY table (columns) FROM STDIN``, the insert's columns (PostgreSQL)."""
    given: tuple[tuple[str, Processor], ...]
    """(attribute, bind processor) of each value a row gives."""
    defaulted: tuple[tuple[Callable[[Any], Any], Processor], ...]
    """(default, bind processor) of each column a row leaves out: its default on insert,
    its ``onupdate`` on update."""
    keyed: tuple[tuple[str, Processor], ...] = ()
    """(attribute, bind processor) of each primary key value of an UPDATE's WHERE."""

    def parameters(self, row: dict[str, Any]) -> tuple[Any, ...]:
        values = [row[key] if bind is None else bind(row[key]) for key, bind in self.given]
        for default, bind in self.defaulted:
            value = default(None)
            values.append(value if bind is None else bind(value))
        values += [row[key] if bind is None else bind(row[key]) for key, bind in self.keyed]
        return tuple(values)


_plans: dict[tuple[type[Any], tuple[str, ...], str, str], _RowPlan] = {}


def _row_plan(
    model: type[Any], keys: tuple[str, ...], dialect: Dialect, kind: Literal["insert", "update"]
) -> _RowPlan:
    plan_key = (model, keys, dialect.name, kind)
    plan = _plans.get(plan_key)
    if plan is None:
        make = _plan_insert if kind == "insert" else _plan_update
        plan = _plans[plan_key] = make(model, keys, dialect)
    return plan


def _plan_update(model: type[Any], keys: tuple[str, ...], dialect: Dialect) -> _RowPlan:
    """``UPDATE table SET (given, then onupdate columns) WHERE (primary key)``."""
    table: Table = model.__table__
    mapper = inspect(model)
    primary = {mapper.get_property_by_column(c).key: c for c in mapper.primary_key}
    missing = set(primary) - set(keys)
    if missing:
        raise ValueError(f"update_rows on {table.name}: each change needs its key {missing}")
    attrs = mapper.column_attrs
    setting = [(key, attrs[key].columns[0]) for key in keys if key not in primary]
    given = {c.name for _, c in setting}
    stamped = [c for c in table.c if c.onupdate is not None and c.name not in given]
    quote = dialect.identifier_preparer
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    assignments = ", ".join(
        f"{quote.quote(c.name)} = {mark}" for c in [*(c for _, c in setting), *stamped]
    )
    where = " AND ".join(f"{quote.quote(c.name)} = {mark}" for c in primary.values())
    return _RowPlan(
        statement=f"UPDATE {quote.format_table(table)} SET {assignments} WHERE {where}",  # noqa: S608 (names from the schema, quoted)
        copy="",
        given=tuple((key, _bind(c, dialect)) for key, c in setting),
        defaulted=tuple(
            (_column_default(table, c, c.onupdate), _bind(c, dialect)) for c in stamped
        ),
        keyed=tuple((key, _bind(c, dialect)) for key, c in primary.items()),
    )


def _bind(column: Column[Any], dialect: Dialect) -> Processor:
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _column_default(table: Table, column: Column[Any], stated: Any) -> Callable[[Any], Any]:
    """A column default (or onupdate) as a callable taking no execution context."""
    if stated.is_callable:
        return stated.arg  # type: ignore[no-any-return]
    if stated.is_scalar:
        return lambda _context: stated.arg
    raise ValueError(f"writing rows of {table.name}: {column.name} needs a value")


def _plan_insert(model: type[Any], keys: tuple[str, ...], dialect: Dialect) -> _RowPlan:
    table: Table = model.__table__
    attrs = inspect(model).column_attrs
    columns = [attrs[key].columns[0] for key in keys]
    given = {c.name for c in columns}
    left_out = [c for c in table.c if c.name not in given and c.default is not None]
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(c.name) for c in [*columns, *left_out])
    mark = "?" if dialect.paramstyle == "qmark" else "%s"

    marks = ", ".join([mark] * (len(columns) + len(left_out)))
    name = quote.format_table(table)
    return _RowPlan(
        statement=f"INSERT INTO {name} ({names}) VALUES ({marks})",  # noqa: S608 (names from the schema, quoted)
        copy=f"COPY {name} ({names}) FROM STDIN",
        given=tuple((key, _bind(c, dialect)) for key, c in zip(keys, columns, strict=True)),
        defaulted=tuple(
            (_column_default(table, c, c.default), _bind(c, dialect)) for c in left_out
        ),
    )


def uuid_as_read(dialect: Dialect) -> Callable[[uuid.UUID], Any]:
    """How a UUID column selected through :func:`unparsed` comes back from the driver: a
    ``uuid.UUID`` where the database has the type (PostgreSQL, psycopg builds it), else the
    32 hex digits SQLAlchemy stores. A query that only groups rows by a key it already
    holds maps its keys this way instead of building a UUID per row (tens of thousands when
    a touchpoint batch reads its people's activities)."""
    return (lambda value: value) if dialect.supports_native_uuid else (lambda value: value.hex)


def unparsed(column: Any) -> Any:
    """``column`` selected as the driver returns it (see :func:`uuid_as_read`)."""
    return type_coerce(column, String())


def once_per_transaction(session: Session, name: str, load: Callable[[], T]) -> T:
    """``load()``, called once per transaction of ``session`` and kept for the rest of it:
    for what a consumer applying hundreds of events in one transaction reads for each
    (the active webhook subscriptions, the active CRM connections), which cannot change
    under it."""
    session.connection()  # begins the transaction, if none has begun
    transaction = session.get_transaction()
    held = session.info.get(name)
    if held is None or held[0] is not transaction:
        held = (transaction, load())
        session.info[name] = held
    value: T = held[1]
    return value


def get_or_404(session: Session, model: type[T], key: object, *, label: str) -> T:
    """The row of ``model`` with primary key ``key``, or a 404 naming ``label``."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(label, key)
    return row


class Database:
    """An engine and its session factory; the one object the entry points pass around."""

    def __init__(self, engine: Engine, session_factory: sessionmaker[Session] | None = None):
        self.engine = engine
        self.session_factory = session_factory or sessionmaker(engine, expire_on_commit=False)
        self._reader = session_factory or sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed when the block ends cleanly and rolled back when it raises."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only, ended by a rollback. On SQLite it reads a snapshot
        beside the one writer (WAL) instead of queueing for the write lock: the worker's
        pollers, which look for new events many times a second, must not hold up the
        requests that write them. Writing through it is a bug; SQLite may refuse it with
        SQLITE_BUSY. (A :class:`Database` given its own session factory, as the tests' one
        joined to an outer transaction, reads through that factory.)"""
        session = self._reader()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def ping(self) -> None:
        with self.session_factory() as session:
            session.execute(text("SELECT 1"))
