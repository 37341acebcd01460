"""Attribution models on journeys already in memory: seconds per model and peak memory.

Issue 5 targets on 1,000,000 journeys (~4,000,000 touches, 20 campaigns): each rule-based
model < 0.5 s, exact Markov order 1 < 1 s, exact Shapley with 12 campaigns < 5 s, peak
memory < 1.5 GB.

The journeys are generated with numpy (seeded): lengths 1 + a geometric number of extra
touches (mean 4), campaigns of unequal popularity (Zipf-like), conversion more likely when
some campaigns were touched (so the models disagree), deal values log-normal, milestone
dates (lead, opened, closed) around the touches. Building them is not timed. Each model
runs ``--runs`` times in a fresh child process, which reports its timings and its peak
resident memory (``ru_maxrss``) beside the memory it had before the model ran.

    python bench/attribution_models.py [--journeys 1000000 --campaigns 20 --runs 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from revhub.attribution.credit import MODELS, RULE_BASED, Params, attribute
from revhub.attribution.journeys import Journeys

OUTPUT = Path(__file__).resolve().parent / "results" / "attribution_models.json"
RULE_TARGET_S, MARKOV_TARGET_S, SHAPLEY_TARGET_S, MEMORY_TARGET_MB = 0.5, 1.0, 5.0, 1536
console = Console()


def synthetic(journeys: int, campaigns: int, touches_mean: float, seed: int) -> Journeys:
    """A seeded journey set; conversion depends on which campaigns were touched."""
    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1 / touches_mean, journeys)  # 1, 2, ... with mean touches_mean
    journey = np.repeat(np.arange(journeys), lengths)
    popularity = 1 / np.arange(1, campaigns + 1) ** 0.8
    group = rng.choice(campaigns, size=journey.size, p=popularity / popularity.sum())
    start = rng.uniform(0, 300, journeys)
    at = start[journey] + rng.uniform(0, 60, journey.size)
    lift = rng.uniform(-1.0, 1.5, campaigns)
    score = np.bincount(journey, weights=lift[group], minlength=journeys) / lengths
    converted = rng.random(journeys) < 1 / (1 + np.exp(-(score - 2.0)))
    value = np.where(converted, np.round(rng.lognormal(8, 1, journeys), 2), 0.0)
    last = start + 60
    missing = np.full(journeys, np.nan)
    return Journeys.build(
        journey=journey,
        group=group,
        at=at,
        converted=converted,
        value=value,
        groups=tuple(f"c{i}" for i in range(campaigns)),
        lead_at=np.where(converted, start + 10, missing),
        opened_at=np.where(converted, start + 40, missing),
        closed_at=np.where(converted, last + 5, missing),
    )


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args: argparse.Namespace, model: str, params: Params, groups: int, out: Any) -> None:
    journeys = synthetic(args.journeys, groups, args.touches_mean, args.seed)
    before = max_rss_mb()
    seconds, credit = [], None
    for _ in range(args.runs):
        started = time.perf_counter()
        credit = attribute(model, journeys, params)
        seconds.append(time.perf_counter() - started)
    assert credit is not None
    conversions_ok = np.isclose(credit.conversions.sum(), journeys.converted.sum(), rtol=1e-6)
    revenue_ok = np.isclose(credit.revenue.sum(), journeys.value.sum(), rtol=1e-6)
    errors = credit.detail.get("standard_error") or [0.0]
    out.send(
        {
            "seconds": seconds,
            "rss_before_mb": before,
            "rss_peak_mb": max_rss_mb(),
            "journeys": journeys.count,
            "touches": int(journeys.journey.size),
            "consistent": bool(conversions_ok and revenue_ok),
            "detail": {k: v for k, v in credit.detail.items() if not isinstance(v, list)}
            | {"largest_standard_error": max(errors)},
        }
    )


def measure(args: argparse.Namespace, label: str, model: str, params: Params, groups: int,
            target: float) -> dict[str, Any]:  # fmt: skip
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(args, model, params, groups, send))
    child.start()
    result: dict[str, Any] = receive.recv()
    child.join()
    return {
        "model": label,
        "campaigns": groups,
        "median_s": statistics.median(result["seconds"]),
        "min_s": min(result["seconds"]),
        "target_s": target,
        **result,
    }


def plan(args: argparse.Namespace) -> list[tuple[str, str, Params, int, float]]:
    base = Params()
    rows = [(name, name, base, args.campaigns, RULE_TARGET_S) for name in RULE_BASED]
    rows += [
        ("markov (order 1)", "markov", base, args.campaigns, MARKOV_TARGET_S),
        ("markov (order 2)", "markov", replace(base, markov_order=2), args.campaigns, 0.0),
        ("shapley exact (12)", "shapley", base, 12, SHAPLEY_TARGET_S),
        (f"shapley sampled ({args.campaigns})", "shapley", base, args.campaigns, 0.0),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--touches-mean", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    assert set(MODELS) >= set(RULE_BASED)
    rows = []
    with console.status("running the models") as status:
        for label, model, params, groups, target in plan(args):
            status.update(f"{label} ({args.runs} runs)")
            rows.append(measure(args, label, model, params, groups, target))
    table = Table(title=f"Attribution models in memory ({rows[0]['journeys']:,} journeys, "
                  f"{rows[0]['touches']:,} touches)")  # fmt: skip
    for column in ("model", "median s", "min s", "target s", "ok", "peak MB", "model MB"):
        table.add_column(column, justify="right" if column != "model" else "left")
    failed = False
    for row in rows:
        within = row["target_s"] == 0 or row["median_s"] < row["target_s"]
        memory = row["rss_peak_mb"] < MEMORY_TARGET_MB
        failed |= not row["consistent"]
        table.add_row(
            row["model"],
            f"{row['median_s']:.3f}",
            f"{row['min_s']:.3f}",
            f"{row['target_s']:.1f}" if row["target_s"] else "-",
            "[green]yes[/]" if within and memory else "[red]no[/]",
            f"{row['rss_peak_mb']:.0f}",
            f"{row['rss_peak_mb'] - row['rss_before_mb']:.0f}",
        )
    console.print(table)
    report = {
        "benchmark": "attribution_models",
        "arguments": vars(args) | {"output": str(args.output)},
        "targets": {
            "rule_based_s": RULE_TARGET_S,
            "markov_s": MARKOV_TARGET_S,
            "shapley_exact_12_s": SHAPLEY_TARGET_S,
            "peak_memory_mb": MEMORY_TARGET_MB,
        },
        "results": rows,
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str))
    if failed:
        console.print("[red]a model's credit did not add up to the journeys[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
