"""Throughput and end-to-end latency of the event backbone (outbox, relay, Redis, consumers).

What it measures, on PostgreSQL and Redis:

1. **Relay throughput**: ``--events`` events are bulk-loaded into the transactional outbox,
   then ``RedisBus.relay()`` is called until it has moved them all to the Redis streams (one
   per topic; events round-robin over the eight topics, tenants over fifty). Target: at
   least 5,000 events/s.
2. **Consume throughput**: one consumer (``bench-pipeline``: one effect row per event, in the
   same transaction as its ``applied_event`` idempotency record) drains those streams with
   ``RedisBus.poll()``. For comparison the same drain runs on the local bus
   (``LocalBus.poll()``: the outbox table is the log, no relay) over a fresh outbox.
3. **Worker drain capacity**: ``--drain-events`` events wait in the outbox when ``--workers``
   real ``revhub worker`` processes start; the figure is events/s from "worker started" until
   every active consumer (``bench-pipeline`` and the built-in ``webhooks``) has applied them
   all. It is the most a worker sustains, which bounds the latency test below.
4. **End-to-end latency**: ``--workers`` ``revhub worker`` processes (``REVHUB_BUS=redis``,
   ``bench-pipeline`` added through ``REVHUB_PLUGINS``) relay and consume while a load
   generator commits one event per transaction (a domain row and its outbox row, like an API
   request) on a fixed schedule of ``--rate`` events/s for ``--duration`` seconds. The load
   is open loop: event *i* is due at ``start + i / rate``, and ``--publisher-procs``
   processes of ``--publishers`` threads commit them, so one slow commit does not hold back
   the schedule. Latency is the wall clock right after the consumer transaction holding the
   effect committed (consumers commit a batch of events at once; see ``pipeline_plugin``)
   minus the wall clock right after the publisher's commit returned (one machine, one
   clock). Each run reports
   p50/p95/p99/max, the achieved rate, how late the generator itself was, the backlog left
   when it stopped, events lost and events applied twice (both must be 0). One unrecorded
   ``--warmup`` comes first; the summary is the median of the per-run figures over
   ``--runs`` runs. Target: p95 under 250 ms.

Each phase gets a scratch database of its own (``bench_events_<random>``, dropped after) and a
Redis key prefix of its own (in db 13 by default, deleted after); workers are stopped with
SIGTERM, also when something fails. CPU use (this process, the workers, the PostgreSQL and
Redis servers, anything else) is recorded per phase, from /proc; the tables flag phases during
which other processes kept the CPUs busy.

Run it from the repository root::

    python bench/events_pipeline.py [--events 20000 --rate 500 --duration 20 --runs 3]

``--workers 2`` starts two worker processes; ``--skip throughput|drain|latency`` (repeatable)
leaves phases out, e.g. for a latency sweep over ``--rate``. ``--postgres`` and
``--redis-url`` (or ``BENCH_POSTGRES_URL`` / ``BENCH_REDIS_URL``) pick the servers.

It prints tables and writes JSON to ``bench/results/events_pipeline.json``. The generator,
the workers, PostgreSQL and Redis all share this machine's CPUs; the figures include that.
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, astuple, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from common import REPO, git
from revhub.core.db import Database, utcnow
from revhub.core.events.bus import CHUNK as APPLY_CHUNK
from revhub.core.events.bus import LocalBus, RedisBus
from revhub.core.events.envelope import TOPICS, Event, EventMetadata
from revhub.core.events.models import AppliedEvent, OutboxEvent
from revhub.core.events.outbox import last_seq as outbox_last_seq
from revhub.core.events.outbox import publish
from revhub.core.retry import RetryPolicy
from revhub.core.webhooks.service import CONSUMER as WEBHOOKS
from revhub.migrations import upgrade

if __package__ in (None, ""):  # run as a script: make ``bench.pipeline_plugin`` importable
    sys.path.insert(0, str(REPO))

from bench.pipeline_plugin import (
    CONSUMER,
    commits,
    domain_rows,
    effects,
    metadata,
    pipeline_consumer,
)

RESULTS = REPO / "bench" / "results" / "events_pipeline.json"
PLUGIN = "bench.pipeline_plugin"
WORKER_CONSUMERS = (CONSUMER, WEBHOOKS)  # what a worker with the plugin applies each event to
TOPIC_CYCLE = sorted(TOPICS)
TENANTS = 50
RELAY_TARGET = 5_000.0  # events/s
P95_TARGET_MS = 250.0
STALL_TIMEOUT_S = 20.0  # waiting for consumers: give up after this long without progress
WORKER_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
OTHER_CPU_WARN = 0.25  # CPUs kept busy by unrelated processes before a phase is flagged
PHASES = ("throughput", "drain", "latency")


def _default(cls: type, parameter: str) -> int:
    return int(inspect.signature(cls).parameters[parameter].default)


REDIS_BATCH = _default(RedisBus, "batch_size")  # what make_bus gives the worker
LOCAL_BATCH = _default(LocalBus, "batch_size")

console = Console(width=None if sys.stdout.isatty() else 150)


class BenchError(Exception):
    """The benchmark could not produce a trustworthy figure."""


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    events: int
    drain_events: int
    rate: float
    duration: float
    runs: int
    warmup: float
    publishers: int
    publisher_procs: int
    workers: int
    postgres: str
    redis_url: str
    output: Path
    skip: frozenset[str]
    plugins: tuple[str, ...]


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    add = parser.add_argument
    add("--events", type=int, default=20_000, help="events for relay/consume throughput")
    add("--drain-events", type=int, default=5_000, help="events for the worker drain")
    add("--rate", type=float, default=500.0, help="offered events/s in the latency runs")
    add("--duration", type=float, default=20.0, help="seconds per latency run")
    add("--runs", type=int, default=3, help="latency runs")
    add("--warmup", type=float, default=3.0, help="unrecorded seconds of load first")
    add("--publishers", type=int, default=4, help="generator threads per process")
    add("--publisher-procs", type=int, default=2, help="generator processes")
    add("--workers", type=int, default=1, help="revhub worker processes")
    add(
        "--postgres",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"
        ),
        help="server for the scratch databases (any database name in it is ignored)",
    )
    add(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="Redis database for the streams (keys under a random prefix, deleted after)",
    )
    add("--output", type=Path, default=RESULTS)
    add(
        "--skip",
        action="append",
        default=[],
        choices=PHASES,
        help="leave a phase out (repeatable), e.g. --skip throughput --skip drain",
    )
    add(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="another REVHUB_PLUGINS module for the workers (repeatable; on PYTHONPATH), "
        "e.g. to measure a candidate change without editing src/",
    )
    ns = parser.parse_args(argv)
    counts = (ns.events, ns.drain_events, ns.runs, ns.publishers, ns.publisher_procs, ns.workers)
    if min(counts) < 1 or ns.rate <= 0 or ns.duration <= 0 or ns.warmup < 0:
        parser.error("counts, --rate and --duration must be positive, --warmup not negative")
    return Options(
        ns.events, ns.drain_events, ns.rate, ns.duration, ns.runs, ns.warmup, ns.publishers,
        ns.publisher_procs, ns.workers, ns.postgres, ns.redis_url, ns.output, frozenset(ns.skip),
        tuple(ns.plugin),
    )  # fmt: skip


# --- scratch database and Redis keys ------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    url: str
    db: Database
    prefix: str


def admin_engine(server: str) -> Engine:
    return create_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")


def delete_keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


@contextmanager
def scratch(options: Options, label: str) -> Iterator[Scratch]:
    """A migrated database of its own and a Redis prefix of its own, both removed after."""
    token = uuid.uuid4().hex[:8]
    name, prefix = f"bench_events_{token}", f"bench-events-{token}:"
    admin = admin_engine(options.postgres)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except BaseException:
        admin.dispose()
        raise
    url = make_url(options.postgres).set(database=name).render_as_string(hide_password=False)
    db: Database | None = None
    try:
        console.log(f"{label}: database {name}, Redis prefix {prefix!r}")
        upgrade(url)
        db = Database.from_url(url)
        metadata.create_all(db.engine)
        yield Scratch(url, db, prefix)
    finally:
        if db is not None:
            db.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        delete_keys(options.redis_url, prefix)


# --- CPU accounting (Linux /proc) ---------------------------------------------------------


@dataclass(frozen=True)
class CpuUse:
    """CPUs busy during a phase (1.0 = one CPU throughout), and who used them."""

    bench: float  # this process and its generator processes
    workers: float  # the revhub worker processes
    postgres_redis: float  # every PostgreSQL and Redis server process
    other: float  # anything else: if high, the phase competed with unrelated work


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    user, nice, system, _idle, _iowait, irq, softirq = Path("/proc/stat").read_text().split()[1:8]
    return sum(int(v) for v in (user, nice, system, irq, softirq)) / _ticks()


def _proc_stat(pid: str) -> tuple[str, float]:
    """(command name, CPU seconds used so far) of a process."""
    head, _, tail = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    fields = tail.split()
    return head.partition("(")[2], (int(fields[11]) + int(fields[12])) / _ticks()


def _servers_cpu_s() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, seconds = _proc_stat(entry.name)
            except (OSError, ValueError, IndexError):
                continue
            if name.startswith(("postgres", "redis-server")):
                total += seconds
    return total


Counters = tuple[float, float, float, float, float]


def cpu_counters(worker_pids: list[int], generator_pids: tuple[int, ...] = ()) -> Counters:
    workers = sum(_proc_stat(str(pid))[1] for pid in worker_pids)
    bench = time.process_time() + sum(_proc_stat(str(pid))[1] for pid in generator_pids)
    return (_machine_busy_s(), time.perf_counter(), bench, workers, _servers_cpu_s())


def cpu_since(
    before: Counters, worker_pids: list[int], generator_pids: tuple[int, ...] = ()
) -> CpuUse:
    after = cpu_counters(worker_pids, generator_pids)
    wall = after[1] - before[1]
    machine, bench, workers, servers = (
        (after[i] - before[i]) / wall for i in (0, 2, 3, 4)
    )  # fmt: skip
    other = max(0.0, machine - bench - workers - servers)
    return CpuUse(round(bench, 2), round(workers, 2), round(servers, 2), round(other, 2))


# --- phase 1: relay and consume throughput, in this process -------------------------------


@dataclass(frozen=True)
class Throughput:
    stage: str
    events: int
    seconds: float
    per_second: float
    cpu: CpuUse
    target: float | None = None

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.per_second >= self.target


def payload(i: int) -> dict[str, Any]:
    """A lead-sized payload (about 200 bytes of JSON)."""
    return {
        "lead_id": str(uuid.uuid4()),
        "email": f"lead{i}@example.com",
        "source": "web-form",
        "score": i % 100,
        "utm": {"campaign": f"c-{i % 17}", "medium": "cpc"},
    }


def outbox_row(i: int, now: datetime) -> dict[str, Any]:
    """Outbox row *i* as ``publish`` would write it (same envelope)."""
    event = Event(
        event_id=uuid.uuid4(),
        event_type="bench.lead.captured",
        tenant_id=f"tenant-{i % TENANTS}",
        timestamp=now,
        payload=payload(i),
        metadata=EventMetadata(correlation_id=f"bench-{i}"),
    )
    dumped = event.model_dump(mode="json")
    return {
        "event_id": event.event_id,
        "topic": TOPIC_CYCLE[i % len(TOPIC_CYCLE)],
        "event_type": event.event_type,
        "tenant_id": event.tenant_id,
        "occurred_at": now,
        "payload": dumped["payload"],
        "meta": dumped["metadata"],
    }


def preload(db: Database, n: int, progress: Progress) -> float:
    """Bulk-insert ``n`` outbox rows (one transaction, executemany); events/s."""
    task = progress.add_task("preload outbox", total=n)
    started = time.perf_counter()
    chunk = 5_000
    with db.transaction() as session:
        for first in range(0, n, chunk):
            now = utcnow()
            rows = [outbox_row(i, now) for i in range(first, min(n, first + chunk))]
            session.execute(insert(OutboxEvent), rows)
            progress.advance(task, len(rows))
    return n / (time.perf_counter() - started)


def drain(step: Callable[[], int], n: int, stage: str, progress: Progress) -> Throughput:
    """Call ``step`` until it has handled ``n`` events."""
    task = progress.add_task(stage, total=n)
    done, idle_since = 0, time.perf_counter()
    before = cpu_counters([])
    while done < n:
        moved = step()
        if moved:
            idle_since = time.perf_counter()
        elif time.perf_counter() - idle_since > STALL_TIMEOUT_S:
            raise BenchError(f"{stage}: stuck at {done} of {n}")
        done += moved
        progress.update(task, completed=done)
    cpu = cpu_since(before, [])
    seconds = time.perf_counter() - before[1]
    return Throughput(stage, n, round(seconds, 3), n / seconds, cpu)


def count_applied(db: Database, consumer: str) -> int:
    with db.transaction() as session:
        query = select(func.count()).select_from(AppliedEvent)
        return int(session.scalar(query.where(AppliedEvent.consumer == consumer)) or 0)


def verify_applied(db: Database, n: int) -> None:
    """Exactly one effect per event, and one ``applied_event`` record each."""
    with db.transaction() as session:
        rows = session.scalar(select(func.count()).select_from(effects)) or 0
        distinct = session.scalar(select(func.count(func.distinct(effects.c.event_id)))) or 0
    marks = count_applied(db, CONSUMER)
    if (rows, distinct, marks) != (n, n, n):
        raise BenchError(
            f"expected {n} effects, {n} distinct and {n} applied_event rows; "
            f"got {rows}, {distinct}, {marks}"
        )


def redis_throughput(options: Options, progress: Progress) -> tuple[list[Throughput], float]:
    """Relay the preloaded outbox to Redis, then drain it with one consumer."""
    n = options.events
    with scratch(options, "Redis bus throughput") as s:
        preload_rate = preload(s.db, n, progress)
        bus = RedisBus(s.db, options.redis_url, topics=TOPICS, prefix=s.prefix)  # as make_bus
        try:
            consumer = pipeline_consumer()
            bus.ensure_groups([consumer])
            relay = drain(bus.relay, n, "relay: outbox → Redis", progress)
            relay = replace(relay, target=RELAY_TARGET)
            in_streams = sum(int(bus.redis.xlen(bus.stream_key(t))) for t in TOPIC_CYCLE)
            if in_streams != n:
                raise BenchError(f"relayed {n} events but the streams hold {in_streams}")
            bus.block_ms = 100  # an empty read must not stall the timing
            policy = RetryPolicy()
            consume = drain(
                lambda: bus.poll(consumer, policy=policy, worker_id="bench"),
                n,
                "consume: Redis bus → 1 consumer",
                progress,
            )
            verify_applied(s.db, n)
        finally:
            bus.redis.close()
    both = relay.seconds + consume.seconds
    cpu = CpuUse(
        *(
            round((a * relay.seconds + b * consume.seconds) / both, 2)
            for a, b in zip(astuple(relay.cpu), astuple(consume.cpu), strict=True)
        )
    )
    combined = Throughput("relay + consume: Redis bus", n, round(both, 3), n / both, cpu)
    return [relay, consume, combined], preload_rate


def local_throughput(options: Options, progress: Progress) -> Throughput:
    """The same drain on the local bus: the consumer reads the outbox table itself."""
    n = options.events
    with scratch(options, "local bus throughput") as s:
        preload(s.db, n, progress)
        bus = LocalBus(s.db)  # as make_bus builds it
        consumer, policy = pipeline_consumer(), RetryPolicy()
        result = drain(
            lambda: bus.poll(consumer, policy=policy),
            n,
            "consume: local bus → 1 consumer",
            progress,
        )
        verify_applied(s.db, n)
    return result


# --- real worker processes ----------------------------------------------------------------


def worker_env(s: Scratch, options: Options, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVHUB_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        REVHUB_DATA_DIR=str(data_dir),
        REVHUB_DATABASE_URL=s.url,
        REVHUB_REDIS_URL=options.redis_url,
        REVHUB_REDIS_PREFIX=s.prefix,
        REVHUB_BUS="redis",
        REVHUB_PLUGINS=json.dumps([PLUGIN, *options.plugins]),
    )
    return env


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_worker(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            console.log(f"[yellow]worker {proc.pid} ignored SIGTERM; killing it[/yellow]")
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -signal.SIGTERM):
        console.log(f"[red]worker {proc.pid} exited {proc.returncode}[/red]\n{log_tail(log_path)}")


def wait_started(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"a worker exited with {proc.returncode}:\n{log_tail(log_path)}")
        if "worker_started" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise BenchError(f"a worker did not start in {WORKER_READY_TIMEOUT_S:g}s")


@contextmanager
def running_workers(s: Scratch, options: Options) -> Iterator[list[int]]:
    """``--workers`` ``revhub worker`` processes on the scratch database; yields their pids
    once every one has its loops running, stops them with SIGTERM afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp, ExitStack() as stack:
        env = worker_env(s, options, Path(tmp) / "data")
        started: list[tuple[subprocess.Popen[bytes], Path]] = []
        for k in range(options.workers):
            log_path = Path(tmp) / f"worker-{k}.log"
            log = stack.enter_context(log_path.open("wb"))
            command = [sys.executable, "-m", "revhub", "worker"]
            proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=log)
            stack.callback(stop_worker, proc, log_path)
            started.append((proc, log_path))
        for proc, log_path in started:
            wait_started(proc, log_path)
        yield [proc.pid for proc, _ in started]
        for proc, log_path in started:
            if proc.poll() is not None:
                raise BenchError(f"worker {proc.pid} died:\n{log_tail(log_path)}")


def applied_counts(db: Database) -> dict[str, int]:
    with db.transaction() as session:
        rows = session.execute(
            select(AppliedEvent.consumer, func.count())
            .where(AppliedEvent.consumer.in_(WORKER_CONSUMERS))
            .group_by(AppliedEvent.consumer)
        ).all()
    return dict.fromkeys(WORKER_CONSUMERS, 0) | {c: int(n) for c, n in rows}


def wait_caught_up(db: Database, total: int, progress: Progress, label: str) -> bool:
    """Until every worker consumer has applied ``total`` events since the database was new;
    False if they stop making progress for ``STALL_TIMEOUT_S``."""
    task = progress.add_task(label, total=total * len(WORKER_CONSUMERS))
    last, moved_at = -1, time.monotonic()
    try:
        while True:
            done = sum(min(total, n) for n in applied_counts(db).values())
            progress.update(task, completed=done)
            if done >= total * len(WORKER_CONSUMERS):
                return True
            if done != last:
                last, moved_at = done, time.monotonic()
            elif time.monotonic() - moved_at > STALL_TIMEOUT_S:
                return False
            time.sleep(0.2)
    finally:
        progress.update(task, visible=False)


def worker_drain(options: Options, progress: Progress) -> Throughput:
    """A backlog in the outbox, then real workers: how fast they relay and apply it all."""
    n = options.drain_events
    with scratch(options, "worker drain") as s:
        preload(s.db, n, progress)
        with running_workers(s, options) as pids:
            before = cpu_counters(pids)
            if not wait_caught_up(s.db, n, progress, "worker drain: relay + 2 consumers"):
                raise BenchError(f"the workers stalled draining: {applied_counts(s.db)}")
            cpu = cpu_since(before, pids)
            seconds = time.perf_counter() - before[1]
        verify_applied(s.db, n)
    procs = "1 worker" if options.workers == 1 else f"{options.workers} workers"
    stage = f"{procs}: relay + {len(WORKER_CONSUMERS)} consumers"
    return Throughput(stage, n, round(seconds, 3), n / seconds, cpu)


# --- phase 2: end-to-end latency ----------------------------------------------------------


@dataclass(frozen=True)
class Published:
    event_id: str
    scheduled: float  # wall clock (time.time())
    committed: float  # wall clock right after the commit returned


def publish_one(db: Database, i: int) -> str:
    """What an API request does: its domain row and its event, in one transaction."""
    tenant = f"tenant-{i % TENANTS}"
    with db.transaction() as session:
        session.execute(insert(domain_rows).values(tenant_id=tenant))
        event = publish(
            session,
            topic=TOPIC_CYCLE[i % len(TOPIC_CYCLE)],
            event_type="bench.lead.captured",
            tenant_id=tenant,
            payload=payload(i),
        )
    return str(event.event_id)


def _publish_on_schedule(
    db: Database, start: float, rate: float, indices: list[int], threads: int, committed: Any
) -> tuple[list[tuple[str, float, float]], list[str]]:
    """Commit event *i* (of ``indices``) at ``start + i / rate`` from ``threads`` threads."""
    pending, lock = iter(indices), threading.Lock()
    done: list[tuple[str, float, float]] = []
    errors: list[str] = []

    def publisher() -> None:
        while not errors:
            with lock:
                i = next(pending, None)
            if i is None:
                return
            due = start + i / rate
            if (delay := due - time.time()) > 0:
                time.sleep(delay)
            try:
                event_id = publish_one(db, i)
            except Exception as exc:  # reported to the parent, which fails the run
                errors.append(repr(exc))
                return
            done.append((event_id, due, time.time()))
            with committed.get_lock():
                committed.value += 1

    pool = [threading.Thread(target=publisher) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return done, errors


def _publisher_main(url: str, threads: int, channel: Any, committed: Any) -> None:
    """A generator process: runs each schedule the parent sends until it sends None."""
    db = Database.from_url(url)
    try:
        db.ping()
        channel.send("ready")
        while (job := channel.recv()) is not None:
            start, rate, indices = job
            channel.send(_publish_on_schedule(db, start, rate, indices, threads, committed))
    finally:
        db.engine.dispose()


@dataclass(frozen=True)
class Generator:
    """Open loop: event *i* is due at ``start + i / rate`` whatever happened before it.

    Several processes (like API server processes: one Python process alone cannot commit 500
    events/s here beside a worker) of several threads each commit them, so a slow commit
    delays only itself until every thread is busy, which the publisher lag shows.
    """

    rate: float
    children: list[tuple[Any, Any]]  # (process, pipe end)
    committed: Any  # a shared counter, for the progress bar

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(int(process.pid) for process, _end in self.children)

    def offer(self, seconds: float, on_progress: Callable[[int], None]) -> list[Published]:
        total = max(1, round(self.rate * seconds))
        self.committed.value = 0
        start = time.time() + 0.05
        for k, (_process, end) in enumerate(self.children):
            end.send((start, self.rate, list(range(k, total, len(self.children)))))
        published: list[Published] = []
        errors: list[str] = []
        for process, end in self.children:
            while not end.poll(0.1):
                on_progress(int(self.committed.value))
                if not process.is_alive():
                    raise BenchError(f"generator process {process.pid} died")
            done, failed = end.recv()
            published += [Published(*row) for row in done]
            errors += failed
        on_progress(int(self.committed.value))
        if errors:
            raise BenchError(f"a publisher failed: {errors[0]}")
        return published


@contextmanager
def generator(url: str, options: Options) -> Iterator[Generator]:
    """``--publisher-procs`` generator processes, connected and waiting; stopped after."""
    context = multiprocessing.get_context("spawn")
    committed = context.Value("q", 0)
    children: list[tuple[Any, Any]] = []
    try:
        for _ in range(options.publisher_procs):
            end, child_end = context.Pipe()
            args = (url, options.publishers, child_end, committed)
            process = context.Process(target=_publisher_main, args=args, daemon=True)
            process.start()
            children.append((process, end))
        for process, end in children:
            if not end.poll(WORKER_READY_TIMEOUT_S) or end.recv() != "ready":
                raise BenchError(f"generator process {process.pid} did not start")
        yield Generator(options.rate, children, committed)
    finally:
        for process, end in children:
            if process.is_alive():
                end.send(None)
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class LatencyRun:
    run: int
    events: int
    offered_rate: float
    achieved_rate: float
    latency: Latency  # effect's transaction committed minus publisher committed
    latency_at_insert: Latency  # effect row inserted (before its batch commits) minus the same
    to_redis: Latency  # the first leg: relayed (outbox relayed_at) minus publisher committed
    publisher_lag: Latency  # publisher committed minus scheduled: how late the generator was
    backlog_at_end: int  # events published but not yet applied when the generator stopped
    catch_up_s: float  # from the generator's stop until every consumer had applied all
    lost: int
    duplicates: int
    unstamped: int  # effects without a commit stamp (measured at insert instead); must be 0
    cpu: CpuUse


def percentiles(seconds: list[float]) -> Latency:
    """Percentiles (linear interpolation, as numpy's default) in milliseconds."""
    ms = [s * 1000.0 for s in seconds] or [0.0]
    if len(ms) == 1:
        ms = ms * 2
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return Latency(*(round(v, 2) for v in (cuts[49], cuts[94], cuts[98], max(ms))))


def max_effect_id(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.coalesce(func.max(effects.c.id), 0))) or 0)


def last_seq(db: Database) -> int:
    with db.transaction() as session:
        return outbox_last_seq(session)


def relayed_after(db: Database, seq: int) -> dict[str, float]:
    """Event id: ``relayed_at`` (set right after the XADDs) of outbox rows after ``seq``."""
    with db.transaction() as session:
        rows = session.execute(
            select(OutboxEvent.event_id, OutboxEvent.relayed_at).where(OutboxEvent.seq > seq)
        ).all()
    return {str(e): r.timestamp() for e, r in rows if r is not None}


@dataclass(frozen=True)
class Applied:
    event_id: str
    committed: float | None  # its transaction's commit (None: no stamp, which is a bug)
    inserted: float  # the effect row's clock_timestamp(), before the batch committed


def effects_after(db: Database, watermark: int) -> list[Applied]:
    """The effect rows written after ``watermark``, with their transaction's commit time."""
    with db.transaction() as session:
        rows = session.execute(
            select(effects.c.event_id, commits.c.committed_at, effects.c.applied_at)
            .outerjoin(commits, commits.c.txid == effects.c.txid)
            .where(effects.c.id > watermark, effects.c.consumer == CONSUMER)
            .order_by(effects.c.id)
        ).all()
    return [Applied(e, c.timestamp() if c is not None else None, a.timestamp()) for e, c, a in rows]


@dataclass
class LatencyPhase:
    s: Scratch
    options: Options
    pids: list[int]
    progress: Progress
    generator: Generator
    published_total: int = 0

    def offer(self, run: int, seconds: float, label: str) -> LatencyRun:
        watermark, seq_watermark = max_effect_id(self.s.db), last_seq(self.s.db)
        task = self.progress.add_task(label, total=max(1, round(self.generator.rate * seconds)))
        before = cpu_counters(self.pids, self.generator.pids)
        published = self.generator.offer(seconds, lambda n: self.progress.update(task, completed=n))
        cpu = cpu_since(before, self.pids, self.generator.pids)
        self.published_total += len(published)
        stopped = time.perf_counter()
        backlog = self.published_total - count_applied(self.s.db, CONSUMER)
        caught_up = wait_caught_up(self.s.db, self.published_total, self.progress, "  catching up")
        catch_up_s = time.perf_counter() - stopped
        if not caught_up:
            console.log(f"[red]{label}: the consumers stalled: {applied_counts(self.s.db)}")
        observed = Observed(
            published, effects_after(self.s.db, watermark), relayed_after(self.s.db, seq_watermark)
        )
        return summarize(run, self.generator.rate, observed, cpu, backlog, catch_up_s)


@dataclass(frozen=True)
class Observed:
    published: list[Published]
    applied: list[Applied]
    relayed: dict[str, float]  # event id: when the relay had put it on Redis


def summarize(
    run: int, rate: float, observed: Observed, cpu: CpuUse, backlog: int, catch_up_s: float
) -> LatencyRun:
    published, applied, relayed = observed.published, observed.applied, observed.relayed
    first: dict[str, Applied] = {}
    for row in applied:
        first.setdefault(row.event_id, row)
    times = Counter(row.event_id for row in applied)
    mine = {p.event_id for p in published}
    seen = [(p, first[p.event_id]) for p in published if p.event_id in first]
    window = max(p.committed for p in published) - min(p.scheduled for p in published)
    return LatencyRun(
        run=run,
        events=len(published),
        offered_rate=rate,
        achieved_rate=round(len(published) / window, 1) if window > 0 else 0.0,
        latency=percentiles([(a.committed or a.inserted) - p.committed for p, a in seen]),
        latency_at_insert=percentiles([a.inserted - p.committed for p, a in seen]),
        to_redis=percentiles([relayed[p.event_id] - p.committed for p, _a in seen]),
        publisher_lag=percentiles([max(0.0, p.committed - p.scheduled) for p in published]),
        backlog_at_end=backlog,
        catch_up_s=round(catch_up_s, 2),
        lost=len(mine - first.keys()),
        duplicates=sum(n - 1 for event_id, n in times.items() if event_id in mine),
        unstamped=sum(1 for _p, a in seen if a.committed is None),
        cpu=cpu,
    )


def latency_runs(options: Options, progress: Progress) -> list[LatencyRun]:
    results: list[LatencyRun] = []
    with (
        scratch(options, "end-to-end latency") as s,
        running_workers(s, options) as pids,
        generator(s.url, options) as load,
    ):
        phase = LatencyPhase(s, options, pids, progress, load)
        if options.warmup > 0:
            phase.offer(0, options.warmup, "warm-up (not recorded)")
        for run in range(1, options.runs + 1):
            label = f"run {run}/{options.runs}: {options.rate:g} events/s"
            result = phase.offer(run, options.duration, label)
            lat = result.latency
            console.log(
                f"run {run}: {result.achieved_rate:g} events/s, p50 {lat.p50_ms:.1f} ms, "
                f"p95 {lat.p95_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms, "
                f"backlog {result.backlog_at_end}, lost {result.lost}, dup {result.duplicates}"
            )
            results.append(result)
            time.sleep(1.0)
    return results


# --- the report ---------------------------------------------------------------------------


def server_versions(options: Options) -> dict[str, str]:
    engine = admin_engine(options.postgres)
    try:
        with engine.connect() as conn:
            pg = str(conn.scalar(text("SHOW server_version")))
            commit = str(conn.scalar(text("SHOW synchronous_commit")))
    finally:
        engine.dispose()
    client = redis.Redis.from_url(options.redis_url)
    try:
        info: dict[str, Any] = client.info("server")
    finally:
        client.close()
    return {
        "postgresql": pg,
        "postgresql_synchronous_commit": commit,
        "redis": str(info.get("redis_version")),
    }


def environment(options: Options, started: datetime) -> dict[str, Any]:
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        **server_versions(options),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": None if dirty is None else bool(dirty),
        "timestamp_utc": started.isoformat(timespec="seconds"),
        "note": f"the generator (this process), {options.workers} worker process(es), "
        f"PostgreSQL and Redis share the same {os.cpu_count()} CPUs",
    }


def median_of(runs: list[LatencyRun], attribute: str) -> dict[str, float]:
    per_run = [asdict(getattr(r, attribute)) for r in runs]
    return {k: round(statistics.median(d[k] for d in per_run), 2) for k in per_run[0]}


def throughput_json(t: Throughput) -> dict[str, Any]:
    return {**asdict(t), "per_second": round(t.per_second, 1), "meets_target": t.meets_target}


def latency_json(runs: list[LatencyRun]) -> dict[str, Any] | None:
    if not runs:
        return None
    latency = median_of(runs, "latency")
    return {
        "basis": "wall clock right after the consumer transaction holding the effect "
        "committed (after_commit hook) minus the publisher's wall clock right after its "
        "commit returned; latency_at_insert: the effect row's clock_timestamp() instead",
        "median": {
            **latency,
            "achieved_rate": statistics.median(r.achieved_rate for r in runs),
            "backlog_at_end": statistics.median(r.backlog_at_end for r in runs),
            "publisher_lag": median_of(runs, "publisher_lag"),
            "latency_at_insert": median_of(runs, "latency_at_insert"),
            "to_redis": median_of(runs, "to_redis"),
        },
        "lost": sum(r.lost for r in runs),
        "duplicates": sum(r.duplicates for r in runs),
        "unstamped": sum(r.unstamped for r in runs),
        "p95_target_ms": P95_TARGET_MS,
        "meets_target": latency["p95_ms"] < P95_TARGET_MS,
        "per_run": [asdict(r) for r in runs],
    }


def build_report(
    options: Options,
    throughput: list[Throughput],
    preload_rate: float | None,
    runs: list[LatencyRun],
    started: datetime,
) -> dict[str, Any]:
    return {
        "benchmark": "events_pipeline",
        "options": {
            **asdict(options),
            "output": str(options.output),
            "skip": sorted(options.skip),
            "plugins": list(options.plugins),
        },
        "batch_size": {"redis": REDIS_BATCH, "local": LOCAL_BATCH, "apply_chunk": APPLY_CHUNK},
        "throughput": [throughput_json(t) for t in throughput],
        "preload_events_per_second": preload_rate and round(preload_rate, 1),
        "latency": latency_json(runs),
        **environment(options, started),
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("[green]yes[/green]" if ok else "[red]no[/red]")


def cpu_cell(cpu: dict[str, float]) -> str:
    cell = f"{cpu['bench']:.2f}/{cpu['workers']:.2f}/{cpu['postgres_redis']:.2f}/"
    other = f"{cpu['other']:.2f}"
    return cell + (f"[yellow]{other}*[/yellow]" if cpu["other"] > OTHER_CPU_WARN else other)


def print_throughput(report: dict[str, Any]) -> None:
    if not report["throughput"]:
        return
    batch = report["batch_size"]
    table = Table(
        title=f"Throughput (read batch: Redis {batch['redis']}, local {batch['local']}; "
        f"{batch['apply_chunk']} events a consumer transaction)"
    )
    for column in ("stage", "events", "seconds", "events/s", "target", "met",
                   "CPU bench/workers/pg+redis/other"):  # fmt: skip
        table.add_column(column, justify="left" if column == "stage" else "right")
    for t in report["throughput"]:
        target = f"≥ {t['target']:,.0f}" if t["target"] else ""
        table.add_row(
            t["stage"], f"{t['events']:,}", f"{t['seconds']:.2f}", f"{t['per_second']:,.0f}",
            target, verdict(t["meets_target"]), cpu_cell(t["cpu"]),
        )  # fmt: skip
    console.print(table)


def _latency_cells(lat: dict[str, Any]) -> list[str]:
    return [f"{lat[k]:,.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]


def _leg(lat: dict[str, Any]) -> str:
    return f"{lat['p50_ms']:,.1f} / {lat['p95_ms']:,.1f}"


def print_latency(report: dict[str, Any]) -> None:
    opts, lat = report["options"], report["latency"]
    if lat is None:
        return
    table = Table(
        title=f"End-to-end latency, publisher commit → effect commit: {opts['rate']:g} events/s "
        f"offered for {opts['duration']:g} s, {opts['workers']} worker process(es)"
    )
    for column in ("run", "events", "events/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                   "→Redis p50/p95", "backlog", "lost", "dup", "gen lag p99",
                   "CPU gen/wrk/db/oth"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in lat["per_run"]:
        table.add_row(
            str(r["run"]), f"{r['events']:,}", f"{r['achieved_rate']:.0f}",
            *_latency_cells(r["latency"]), _leg(r["to_redis"]), f"{r['backlog_at_end']:,}",
            str(r["lost"]),
            str(r["duplicates"]), f"{r['publisher_lag']['p99_ms']:,.1f}", cpu_cell(r["cpu"]),
        )  # fmt: skip
    m = lat["median"]
    table.add_row(
        "[bold]median[/bold]", "", f"{m['achieved_rate']:.0f}", *_latency_cells(m),
        _leg(m["to_redis"]), f"{m['backlog_at_end']:,.0f}", str(lat["lost"]),
        str(lat["duplicates"]), f"{m['publisher_lag']['p99_ms']:,.1f}", "",
    )  # fmt: skip
    console.print(table)
    console.print(
        f"p95 under {P95_TARGET_MS:g} ms: {verdict(lat['meets_target'])}   "
        f"lost: {lat['lost']}   applied twice: {lat['duplicates']}   "
        f"(* other processes kept more than {OTHER_CPU_WARN:g} CPU busy)"
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    throughput: list[Throughput] = []
    preload_rate: float | None = None
    runs: list[LatencyRun] = []
    try:
        with Progress(*columns, console=console) as progress:
            if "throughput" not in options.skip:
                throughput, preload_rate = redis_throughput(options, progress)
                throughput.append(local_throughput(options, progress))
            if "drain" not in options.skip:
                throughput.append(worker_drain(options, progress))
            if "latency" not in options.skip:
                runs = latency_runs(options, progress)
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    report = build_report(options, throughput, preload_rate, runs, started)
    write_json(report, options.output)
    print_throughput(report)
    print_latency(report)
    console.print(f"JSON: {options.output}")
    lat = report["latency"]
    return 1 if lat and (lat["lost"] or lat["duplicates"]) else 0


if __name__ == "__main__":
    sys.exit(main())
