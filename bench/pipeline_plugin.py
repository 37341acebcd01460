"""The consumer and tables of ``bench/events_pipeline.py``; also a ``REVHUB_PLUGINS`` module.

A real ``revhub worker`` started with ``REVHUB_PLUGINS='["bench.pipeline_plugin"]'`` (and the
repository root on ``PYTHONPATH``) calls :func:`register`, which adds the ``bench-pipeline``
consumer on every topic. Its effect is one ``bench_effect`` row per application, written in
the transaction that also records the consumer's ``applied_event``. A duplicate application
would show as two rows for one event id (``event_id`` is deliberately not unique).

When the effect became visible is its transaction's commit, which can be later than the
row's insert: consumers apply a batch of events in one transaction. So the handler also
tags the row with the transaction id and, once per transaction, hooks ``after_commit`` to
store (transaction id, wall clock right after the commit returned) in ``bench_commit``, from
a separate connection with ``synchronous_commit = off``: one small extra write per consumer
transaction, none per event.

``bench_domain_row`` stands for the domain row an API request commits with its event.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from revhub.core.events.consumers import Consumer, ConsumerRegistry, Handler
from revhub.core.events.envelope import TOPICS, Event

CONSUMER = "bench-pipeline"
TXID = "bench_txid"  # in ``session.info`` once the commit hook is in place

metadata = MetaData()
effects = Table(
    "bench_effect",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),  # at insert, before commit
    Column("txid", BigInteger, nullable=True),
)
commits = Table(
    "bench_commit",
    metadata,
    Column("txid", BigInteger, primary_key=True),
    Column("committed_at", DateTime(timezone=True), nullable=False),
)
domain_rows = Table(
    "bench_domain_row",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def stamp_commit(session: Session) -> int:
    """The id of ``session``'s transaction; its commit time goes to ``bench_commit``.
    One query and one hook per transaction, however many events it applies."""
    if (txid := session.info.get(TXID)) is not None:
        return int(txid)
    txid = int(session.scalar(select(func.txid_current())) or 0)
    session.info[TXID] = txid
    engine = session.get_bind().engine

    def committed(_session: Session) -> None:
        at = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(insert(commits).values(txid=txid, committed_at=at))

    event.listen(session, "after_commit", committed, once=True)
    return txid


def make_handler(consumer: str, *, stamp_commits: bool) -> Handler:
    def handle(session: Session, event: Event, topic: str) -> None:
        txid = stamp_commit(session) if stamp_commits else None
        session.execute(
            insert(effects).values(
                consumer=consumer,
                event_id=str(event.event_id),
                applied_at=func.clock_timestamp(),
                txid=txid,
            )
        )

    return handle


def pipeline_consumer(name: str = CONSUMER, *, stamp_commits: bool = False) -> Consumer:
    return Consumer(
        name,
        frozenset(TOPICS),
        handle=make_handler(name, stamp_commits=stamp_commits),
        description="benchmark: one effect row per event",
    )


def register(registry: ConsumerRegistry) -> None:
    registry.register(pipeline_consumer(stamp_commits=True))
