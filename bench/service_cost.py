"""CPU of the bulk service functions alone: what a lead and a touchpoint cost to capture,
without HTTP, the worker or a client sharing the machine.

What it measures: for each of ``--runs`` runs, on a fresh database built in this process
(``common.in_process_hub``: a SQLite file, or the PostgreSQL database ``--postgres`` with
its schema dropped; embedded worker off), seeded through the API (the campaigns,
territories and reps of ``bench/bulk_ingest.py``), ``--leads`` leads in batches of
``--batch`` through ``sales.service.capture_leads`` and then ``--touchpoints`` touchpoints
of the people captured through ``sales.touchpoints.add_touchpoints``, then 200 more leads
in batches of 1 and of 4 (single leads arriving together are captured in such small
batches: their cost is mostly each batch's statements), each batch in a transaction of
its own, committed, its answer serialised as the API would. Each batch is
timed with ``time.process_time()`` (this process's CPU, including SQLite's work and the
WAL checkpoint thread; not PostgreSQL's) and with the wall clock.

``bench/bulk_ingest.py`` gives the figures a user sees; they move by a fifth from one
hour to the next on this machine, because the client, the hub and its worker share two
CPUs. This one measures the request pipeline's own cost, steadier from run to run, to
compare one change with the code before it::

    python bench/service_cost.py [--leads 4000 --touchpoints 15000 --runs 3 --backend sqlite]
    PYTHONPATH=/tmp/snap/src python bench/service_cost.py   # a ``git archive`` snapshot

It prints a table (CPU ms per 1,000 items and items per CPU second, medians over the
batches of each run, and the median of the runs; and the KiB written per item: on SQLite
the WAL frames of the commits, a dirtied page each, on PostgreSQL its write-ahead log) and
writes
``bench/results/service_cost.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from common import (
    CAMPAIGNS,
    REPO,
    LeadFactory,
    add_in_process_options,
    environment,
    in_process_hub,
    seed_team,
    touchpoint,
    write_json,
)

DEFAULT_OUTPUT = REPO / "bench" / "results" / "service_cost.json"
SMALL_BATCHES = (1, 4)
"""Single leads captured together (``POST …/leads`` batches them): a batch's fixed cost."""
SMALL_LEADS = 200
PHASES = ("leads", "touchpoints", *(f"leads by {n}" for n in SMALL_BATCHES))

console = Console() if sys.stdout.isatty() else Console(width=150)


def _timed(db: Any, work: Callable[[Any], Any]) -> tuple[float, float, int]:
    """(CPU s, wall s, bytes written) of ``work(session)`` in a transaction, committed, its
    answer serialised; every item must be accepted."""
    written = _written(db)
    cpu, wall = time.process_time(), time.perf_counter()
    with db.transaction() as session:
        answer = work(session)
    answer.model_dump_json()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if answer.rejected:
        raise SystemExit(f"{answer.rejected} items refused: the benchmark's data is wrong")
    return cpu, wall, _written(db) - written


def _written(db: Any) -> int:
    """Bytes written so far. SQLite: this process's ``write`` calls (``/proc/self/io``), which
    are its WAL's frames, a dirtied page each, as the database lives in this process.
    PostgreSQL: the position in its write-ahead log (every database's writes, so run it on
    a quiet server). Read outside the timed span."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            return int(connection.scalar(text(WAL_POSITION)))
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise SystemExit("/proc/self/io has no wchar line: the benchmark needs Linux")


WAL_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"


def _phase(name: str, items: int, timings: list[tuple[float, float, int]], batch: int) -> dict:
    cpu = statistics.median(t[0] for t in timings)
    wall = statistics.median(t[1] for t in timings)
    return {
        "phase": name,
        "items": items,
        "batches": len(timings),
        "cpu_ms_per_1000": round(1000 * cpu * 1000 / batch, 1),
        "per_cpu_second": round(batch / cpu, 1),
        "per_wall_second": round(batch / wall, 1),
        "kib_written_per_item": round(sum(t[2] for t in timings) / items / 1024, 1),
    }


def one_run(options: argparse.Namespace, run: int) -> dict[str, Any]:
    from revhub.contacts.pii import pii_for
    from revhub.sales import service
    from revhub.sales import touchpoints as touches

    with in_process_hub(
        options.backend, postgres_url=options.postgres, redis_url=options.redis_url
    ) as (settings, db, client):
        with client:
            seed_team(client)
        pii = pii_for(settings)
        keys = [k for k, _, _ in CAMPAIGNS]
        factory = LeadFactory(options.seed + run, campaigns=keys, identify=0.0, merge=0.0)

        def leads(count: int) -> list[dict[str, Any]]:
            bodies = [factory.next()[1] for _ in range(count)]
            for body in bodies:
                factory.confirm(body)
            return bodies

        _timed(db, lambda s: service.capture_leads(s, pii, items=leads(200)))  # warm-up
        emails: list[str] = []
        timings = []
        for start in range(0, options.leads, options.batch):
            batch = leads(min(options.batch, options.leads - start))
            emails += [b["email"] for b in batch]
            timings.append(_timed(db, lambda s, b=batch: service.capture_leads(s, pii, items=b)))
        result = {"run": run, "leads": _phase("leads", options.leads, timings, options.batch)}
        rng = random.Random(options.seed + run)
        tps = [touchpoint(rng, keys, email=rng.choice(emails)) for _ in range(options.touchpoints)]
        timings = []
        for start in range(0, len(tps), options.batch):
            batch = tps[start : start + options.batch]
            timings.append(_timed(db, lambda s, b=batch: touches.add_touchpoints(s, pii, items=b)))
        result["touchpoints"] = _phase("touchpoints", len(tps), timings, options.batch)
        for n in SMALL_BATCHES:
            timings = [
                _timed(db, lambda s, b=leads(n): service.capture_leads(s, pii, items=b))
                for _ in range(SMALL_LEADS // n)
            ]
            result[f"leads by {n}"] = _phase(f"leads by {n}", SMALL_LEADS, timings, n)
        for phase in PHASES:
            r = result[phase]
            console.print(
                f"[dim]run {run}: {phase} {r['cpu_ms_per_1000']:.0f} CPU ms per 1,000, "
                f"{r['per_cpu_second']:.0f}/CPU s, {r['per_wall_second']:.0f}/s, "
                f"{r['kib_written_per_item']:.1f} KiB written per item[/dim]"
            )
        return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("cpu_ms_per_1000", "per_cpu_second", "per_wall_second", "kib_written_per_item")
    return {
        phase: {k: round(statistics.median(r[phase][k] for r in runs), 1) for k in keys}
        for phase in PHASES
    }


def show(runs: list[dict[str, Any]], median: dict[str, Any], options: argparse.Namespace) -> None:
    table = Table(
        title=f"Service cost on {options.backend}: batches of {options.batch}, "
        f"{len(runs)} runs (this process's CPU; medians over each run's batches)"
    )
    for name in ("run", "phase", "CPU ms / 1,000", "items / CPU s", "items / s", "KiB / item"):
        table.add_column(name, justify="right")
    for r in runs:
        for phase in PHASES:
            p = r[phase]
            table.add_row(
                str(r["run"]), phase, f"{p['cpu_ms_per_1000']:.0f}",
                f"{p['per_cpu_second']:.0f}", f"{p['per_wall_second']:.0f}",
                f"{p['kib_written_per_item']:.1f}",
            )  # fmt: skip
    for phase in PHASES:
        m = median[phase]
        table.add_row(
            "median", phase, f"{m['cpu_ms_per_1000']:.0f}", f"{m['per_cpu_second']:.0f}",
            f"{m['per_wall_second']:.0f}", f"{m['kib_written_per_item']:.1f}", style="bold",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--leads", type=int, default=4000, help="leads per run (4000)")
    add("--touchpoints", type=int, default=15_000, help="touchpoints per run (15000)")
    add("--batch", type=int, default=1000, help="items per batch (1000, the API's most)")
    add_in_process_options(parser, default_output=DEFAULT_OUTPUT)
    options = parser.parse_args(argv)
    if min(options.leads, options.touchpoints, options.runs, options.batch) <= 0:
        parser.error("--leads, --touchpoints, --batch and --runs must be positive")
    if options.batch > 1000:
        parser.error("--batch: the API takes at most 1,000 items a request")
    started = datetime.now(UTC)
    runs = [one_run(options, run) for run in range(1, options.runs + 1)]
    median = summary(runs)
    show(runs, median, options)
    write_json(
        {
            "benchmark": "service_cost",
            "options": {k: str(v) for k, v in vars(options).items()},
            "environment": environment(started, [options.backend], options.postgres),
            "runs": runs,
            "median": median,
        },
        options.output,
    )
    console.print(f"JSON written to {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
