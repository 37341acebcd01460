"""Garbage-collector pauses on the lead-capture path, per first-generation threshold: what
``revhub.core.memory`` chose its thresholds from.

What it measures: the capture process's path (``sales.capture_process.capture_jobs``: the
six steps and each lead's audit entry, one transaction per batch) in this process, on a
fresh database (``common.in_process_hub``, seeded with the team and campaigns of
``bench/bulk_ingest.py``). As the lead-capture child does before its first batch, what is
loaded is frozen (``tune_garbage_collector``) and the threshold set (threshold 0: nothing
frozen, CPython's 700, as the child ran before it was tuned); after ten warm-up batches,
``--batches`` batches of ``--size`` new leads, each made just before it runs, go while
``gc.callbacks`` time every collection (the means mix the generations; the table counts
each). Each threshold runs in a process of its own, one after the other, then again
``--runs`` times. Pauses barely move with the machine's load; the batch times do (several
tens of percent from one minute to the next on this machine), so compare those only
within one sitting.

Run from the repository root::

    python bench/gc_pauses.py [--size 3 --batches 1500 --thresholds 0 700 10000 50000]
    python bench/gc_pauses.py --size 500 --batches 8          # bulk-sized batches

It prints a table and writes ``bench/results/gc_pauses.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, REPO, capture_bench, write_json

DEFAULT_OUTPUT = REPO / "bench" / "results" / "gc_pauses.json"
WARM_UP = 10
UNTUNED = 0
"""As a threshold: CPython's defaults, nothing frozen (the lead-capture child before it
was tuned)."""
console = Console() if sys.stdout.isatty() else Console(width=120)


def measure(options: argparse.Namespace) -> dict[str, Any]:
    """The measured work (``--inner``): one threshold, printed as JSON on stdout."""
    with capture_bench(
        options.backend,
        postgres_url=options.postgres,
        redis_url=options.redis_url,
        size=options.size,
    ) as (capture, jobs):
        gc.collect()
        if options.inner == UNTUNED:
            gc.unfreeze()  # (the app's start-up froze what it loaded)
        else:
            gc.freeze()
        gc.set_threshold(options.inner or 700, *gc.get_threshold()[1:])
        for _ in range(WARM_UP):
            capture(jobs())
        pauses: list[tuple[int, float]] = []
        started = [0.0]

        def timed(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses.append((info["generation"], time.perf_counter() - started[0]))

        gc.callbacks.append(timed)
        walls = []
        for _ in range(options.batches):
            batch = jobs()
            began = time.perf_counter()
            capture(batch)
            walls.append(time.perf_counter() - began)
        gc.callbacks.remove(timed)
    walls.sort()
    ms = [p * 1000 for _, p in pauses]
    return {
        "threshold": options.inner,
        "collections": len(pauses),
        "by_generation": [sum(1 for gg, _ in pauses if gg == g) for g in (0, 1, 2)],
        "pause_mean_ms": round(statistics.mean(ms), 2) if ms else 0.0,
        "pause_max_ms": round(max(ms), 2) if ms else 0.0,
        "total_ms": round(sum(ms), 1),
        "batch_p50_ms": round(1000 * walls[len(walls) // 2], 2),
        "batch_p99_ms": round(1000 * walls[int(len(walls) * 0.99)], 2),
    }


def run_one(options: argparse.Namespace, threshold: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--inner", str(threshold), "--size", str(options.size),
        "--batches", str(options.batches), "--backend", options.backend,
        "--postgres", options.postgres, "--redis-url", options.redis_url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"threshold {threshold} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_table(options: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    table = Table(
        title=f"GC on the capture path ({options.backend}): {options.batches} batches of "
        f"{options.size} leads per run",
        caption="pauses and totals in ms; gen 0/1/2 = collections by oldest generation",
    )
    for name in ("threshold", "run", "collections", "gen 0/1/2", "mean pause", "max pause",
                 "total", "batch p50", "batch p99"):  # fmt: skip
        table.add_column(name, justify="right")
    for r in results:
        g = r["by_generation"]
        name = f"{r['threshold']:,}" if r["threshold"] else "untuned"
        table.add_row(
            name, str(r["run"]), str(r["collections"]),
            f"{g[0]}/{g[1]}/{g[2]}", f"{r['pause_mean_ms']:.2f}", f"{r['pause_max_ms']:.2f}",
            f"{r['total_ms']:.0f}", f"{r['batch_p50_ms']:.2f}", f"{r['batch_p99_ms']:.2f}",
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--size", type=int, default=3, help="leads per batch (3)")
    add("--batches", type=int, default=1500, help="measured batches per run (1500)")
    add(
        "--thresholds",
        type=int,
        nargs="+",
        default=[UNTUNED, 700, 10_000, 50_000],
        help="first-generation thresholds; 0 = untuned (default: 0 700 10000 50000)",
    )
    add("--runs", type=int, default=2, help="runs of each threshold, interleaved (2)")
    add("--backend", choices=("sqlite", "postgres"), default="sqlite")
    add("--postgres", default=DEFAULT_POSTGRES_URL, help="database (schema dropped each run)")
    add("--redis-url", default=DEFAULT_REDIS_URL, help="Redis (keys under a random prefix)")
    add("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file")
    add("--inner", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner is not None:
        print(json.dumps(measure(options), default=str))
        return
    results = []
    for run in range(1, options.runs + 1):
        for threshold in options.thresholds:
            console.print(f"[dim]run {run}: threshold {threshold or 'untuned'}[/dim]")
            results.append(run_one(options, threshold) | {"run": run})
    print_table(options, results)
    report = {
        "benchmark": "gc_pauses",
        "backend": options.backend,
        "size": options.size,
        "batches": options.batches,
        "results": results,
        "finished": datetime.now(UTC).isoformat(),
    }
    write_json(report, options.output)
    console.print(f"JSON written to {options.output}")


if __name__ == "__main__":
    main()
