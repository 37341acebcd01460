"""Instructions a lead-capture batch costs, counted by valgrind: a figure that does not move
with the machine's speed or load, to compare one change with the code before it.

What it measures: the capture process's path (``sales.capture_process.capture_jobs``: the
six steps and each lead's audit entry, one transaction per batch) in this process, on a
fresh SQLite database, or with ``--backend postgres`` on PostgreSQL and the Redis bus
(``common.in_process_hub``, seeded with the team and campaigns of
``bench/bulk_ingest.py``), after ten warm-up batches. On PostgreSQL the count is the
client's side only (SQLAlchemy, psycopg, libpq: what the capture process spends), not the
server's. Each figure is run twice under
``valgrind --tool=callgrind``, once with no measured batch and once with ``--batches``
batches of ``--size`` new leads; the difference over the batches is one batch's
instructions (Python, SQLite and the driver: all of this process). On this machine's
hours-long drift (the speed of a plain Python loop moved by 3x from one day to the next)
wall-clock and CPU timings of a one-lead batch moved by a third between runs; these
counts repeat to well under 1 %.

Run from the repository root (each size takes a few minutes under valgrind)::

    python bench/capture_instructions.py [--sizes 1 4 --batches 100 --backend sqlite]
    python bench/capture_instructions.py --src /tmp/snap/src   # a ``git archive`` snapshot

It prints a table and writes ``bench/results/capture_instructions.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, REPO, capture_bench, write_json

DEFAULT_OUTPUT = REPO / "bench" / "results" / "capture_instructions.json"
WARM_UP = 10
console = Console() if sys.stdout.isatty() else Console(width=120)


def capture(batches: int, size: int, options: argparse.Namespace) -> None:
    """The measured work (``--inner``): warm-up, then ``batches`` batches of ``size``."""
    with capture_bench(
        options.backend, postgres_url=options.postgres, redis_url=options.redis_url, size=size
    ) as (run, jobs):
        for _ in range(WARM_UP):
            run(jobs())
        prepared = [jobs() for _ in range(batches)]
        for batch in prepared:
            run(batch)


def counted(batches: int, size: int, options: argparse.Namespace) -> int:
    """Instructions of one ``--inner`` run under callgrind."""
    env = dict(os.environ, REVHUB_SHED_AFTER_SECONDS="3600")  # valgrind runs ~50x slower
    if options.src is not None:
        env["PYTHONPATH"] = f"{options.src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    with tempfile.TemporaryDirectory(prefix="revhub-callgrind-") as tmp:
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
            sys.executable, __file__, "--inner", str(batches), str(size),
            "--backend", options.backend, "--postgres", options.postgres,
            "--redis-url", options.redis_url,
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--sizes", type=int, nargs="+", default=[1, 4], help="leads per batch (1 4)")
    add("--batches", type=int, default=100, help="measured batches per size (100)")
    add("--src", type=Path, help="import revhub from this src directory (the code before)")
    add("--backend", choices=("sqlite", "postgres"), default="sqlite")
    add("--postgres", default=DEFAULT_POSTGRES_URL, help="database (schema dropped each run)")
    add("--redis-url", default=DEFAULT_REDIS_URL, help="Redis (keys under a random prefix)")
    add("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file")
    add("--inner", type=int, nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        capture(*options.inner, options)
        return
    base = counted(0, 1, options)
    rows: list[dict[str, Any]] = []
    for size in options.sizes:
        total = counted(options.batches, size, options)
        per_batch = (total - base) / options.batches
        rows.append({"size": size, "instructions_per_batch": round(per_batch),
                     "instructions_per_lead": round(per_batch / size)})  # fmt: skip
        console.print(f"[dim]batches of {size}: {per_batch / 1e6:.2f} M instructions each[/dim]")
    table = Table(
        title=f"Lead-capture batch under callgrind, {options.backend} "
        f"({options.src or 'this checkout'})"
    )
    for name in ("leads a batch", "M instructions a batch", "M instructions a lead"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            str(row["size"]), f"{row['instructions_per_batch'] / 1e6:.2f}",
            f"{row['instructions_per_lead'] / 1e6:.2f}",
        )  # fmt: skip
    console.print(table)
    report = {"src": str(options.src or "checkout"), "backend": options.backend,
              "batches": options.batches,
              "baseline_instructions": base, "results": rows}  # fmt: skip
    write_json(report, options.output)
    console.print(f"JSON written to {options.output}")


if __name__ == "__main__":
    main()
