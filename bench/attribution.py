"""Attribution models on journeys already in memory: seconds per model and peak memory on
~1,000,000 synthetic journeys with ~4,000,000 touchpoints over 20 campaigns.

What it measures: ``revhub.attribution.credit.attribute(model, journeys, params)`` for every
model of ``MODELS`` on one seeded synthetic journey set (``generate``; building the
``Journeys`` is not timed), ``--runs`` (5) times each; the table shows the median and the
fastest run. Targets (the issue): each rule-based model < 0.5 s, exact Markov order 1 < 1 s,
exact Shapley with 12 campaigns < 5 s, peak memory < 1.5 GiB. Also reported, without a
target: Markov order 2, and Shapley on all 20 campaigns, which is sampled beyond
``Params.shapley_exact_limit`` (15) campaigns (``--shapley-samples`` orderings; the table
notes the largest standard error). The 12-campaign set is the same journeys with each
touch's campaign folded to ``campaign % 12`` (campaigns 13-20 become 1-8): same touches,
times, conversions and values, so only the number of players changes.

Each run starts from fresh journeys as a request does: the ``Journeys`` cached properties
(journey starts, lengths, touch positions) are dropped before it, so their cost is timed.
Every credit is checked: conversions summed over campaigns must equal the converting
journeys and revenue the journeys' value (relative 1e-6); the script exits 1 otherwise.

Memory: each model is measured in a fresh child process (multiprocessing "spawn") that loads
the journeys (saved once by another child as ``.npy`` files in a temporary directory),
records its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) as the baseline, runs the model
``--runs`` times and reads the peak again: "peak" is the whole process (journeys, numpy and
scipy included) and "+model" what the model added over the baseline. The parent never
holds the journeys: a spawned child's ``ru_maxrss`` starts from its parent's peak (the
kernel carries it across fork and exec), which would hide a smaller model's own peak.

Run from the repository root::

    python bench/attribution.py [--journeys 1000000 --campaigns 20 --runs 5 --seed 1]

It prints a table and writes ``bench/results/attribution.json`` (gitignored) with every
figure and the machine's CPU count. The models are single-threaded numpy (a dense solve in
Markov may use BLAS threads); nothing else of the benchmark runs while a model is timed.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from common import OTHER_CPU_WARN, REPO, environment, wait_quiet, write_json
from revhub.attribution.journeys import Floats, Journeys

DEFAULT_OUTPUT = REPO / "bench" / "results" / "attribution.json"
RULE_TARGET_S = 0.5
MARKOV_TARGET_S = 1.0  # exact, order 1
SHAPLEY_EXACT_TARGET_S = 5.0  # exact, 12 campaigns
PEAK_TARGET_MIB = 1536.0  # 1.5 GiB, the whole process
REL_TOLERANCE = 1e-6
YEAR_DAYS = 365.0
GAP_MEAN_DAYS = 6.0  # between a journey's touches
CLOSE_MEAN_DAYS = 10.0  # from the last touch to the deal's close
KINDS = 5  # touchpoint types (e-mail open, click, web session, ...): held, not used by models

console = Console() if sys.stdout.isatty() else Console(width=150)


@dataclass(frozen=True)
class Options:
    journeys: int
    campaigns: int
    touches_mean: float
    conversion: float
    seed: int
    runs: int
    exact_campaigns: int
    shapley_samples: int
    models: tuple[str, ...]
    quiet_wait: float
    output: Path


# --- synthetic journeys -------------------------------------------------------------------


def generate(
    journeys: int, campaigns: int, touches_mean: float, conversion: float, seed: int
) -> Journeys:
    """A seeded synthetic journey set, vectorised:

    * lengths 1 + Poisson(``touches_mean`` - 1);
    * campaigns of unequal popularity (Zipf-like, weight ∝ rank^-0.9), each with its own
      pull early and late in a journey (a touch at relative place r draws from the "late"
      weights with probability r), so first-touch, last-touch and the rest disagree;
    * a conversion lift per campaign (normal on the log-odds scale, summed over the touches,
      so longer journeys convert more), the intercept set by bisection so that about
      ``conversion`` of the journeys convert;
    * deal values lognormal (median ~8,000) times a factor of the closing campaign, so
      revenue credit differs from conversion credit;
    * times in days within a year: exponential gaps (mean 6 days) from a uniform start; for
      a converting journey the lead is created at one of its touches, the deal opened at or
      after a later (or the same) touch and before the next one, and closed after the last
      touch (mean 10 days later). Non-converting journeys have no milestones (NaN).
    """
    rng = np.random.default_rng(seed)
    lengths = 1 + rng.poisson(touches_mean - 1.0, journeys)
    touches = int(lengths.sum())
    journey = np.repeat(np.arange(journeys, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    ends = starts + lengths - 1
    position = np.arange(touches) - starts[journey]
    span = np.maximum(lengths - 1, 1)[journey]
    relative = position / span  # 0 at the first touch, 1 at the last (0 for one touch)

    popularity = np.arange(1, campaigns + 1, dtype=np.float64) ** -0.9
    early = popularity * rng.permutation(np.linspace(0.3, 3.0, campaigns))
    late = popularity * rng.permutation(np.linspace(0.3, 3.0, campaigns))
    group = np.where(
        rng.random(touches) < relative,
        rng.choice(campaigns, size=touches, p=late / late.sum()),
        rng.choice(campaigns, size=touches, p=early / early.sum()),
    ).astype(np.int64)

    lift = rng.normal(0.0, 0.6, campaigns)
    score = np.bincount(journey, weights=lift[group], minlength=journeys)
    low, high = -30.0, 30.0
    chance = np.zeros(journeys)
    for _ in range(60):
        middle = (low + high) / 2
        chance = 1.0 / (1.0 + np.exp(-(middle + score)))
        low, high = (middle, high) if chance.mean() < conversion else (low, middle)
    converted = rng.random(journeys) < chance

    gaps = rng.exponential(GAP_MEAN_DAYS, touches)
    gaps[starts] = 0.0
    offset = np.cumsum(gaps)
    offset -= offset[starts][journey]
    begin = rng.random(journeys) * np.maximum(YEAR_DAYS - offset[ends], 0.0)
    at = begin[journey] + offset

    closed = at[ends] + rng.exponential(CLOSE_MEAN_DAYS, journeys)
    opened_touch = starts + (rng.random(journeys) * lengths).astype(np.int64)
    following = np.where(opened_touch < ends, at[np.minimum(opened_touch + 1, touches - 1)], closed)
    opened = at[opened_touch] + rng.random(journeys) * (following - at[opened_touch])
    lead_touch = starts + (rng.random(journeys) * (opened_touch - starts + 1)).astype(np.int64)
    lead = at[lead_touch]

    closer = rng.lognormal(0.0, 0.4, campaigns)
    value = np.round(rng.lognormal(math.log(8000.0), 1.0, journeys) * closer[group[ends]], 2)
    none = np.full(journeys, np.nan)
    return Journeys.build(
        journey=journey,
        group=group,
        at=at,
        converted=converted,
        value=np.where(converted, value, 0.0),
        groups=tuple(f"campaign-{c + 1:02d}" for c in range(campaigns)),
        lead_at=np.where(converted, lead, none),
        opened_at=np.where(converted, opened, none),
        closed_at=np.where(converted, closed, none),
        kind=rng.integers(0, KINDS, touches),
    )


ARRAYS = tuple(f.name for f in fields(Journeys) if f.name != "groups")


def save(journeys: Journeys, directory: Path) -> None:
    for name in ARRAYS:
        np.save(directory / f"{name}.npy", getattr(journeys, name))


def load(directory: Path, groups: tuple[str, ...], fold: int | None) -> Journeys:
    """The saved journeys (already sorted and checked by ``Journeys.build``); with ``fold``,
    each touch's campaign becomes ``campaign % fold``."""
    arrays = {name: np.load(directory / f"{name}.npy") for name in ARRAYS}
    if fold is not None:
        arrays["group"] %= fold
        groups = groups[:fold]
    return Journeys(**arrays, groups=groups)


def forget_cached(journeys: Journeys) -> None:
    """Drop the ``Journeys`` cached properties, as a fresh request's journeys have none."""
    for name, attribute in vars(Journeys).items():
        if isinstance(attribute, functools.cached_property):
            journeys.__dict__.pop(name, None)


def maxrss_mib() -> float:
    """This process's peak RSS (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- child processes ----------------------------------------------------------------------


def prepare(options: Options, directory: Path) -> dict[str, Any]:
    """In a child: generate the journeys and save them; what they hold."""
    started = time.perf_counter()
    journeys = generate(
        options.journeys, options.campaigns, options.touches_mean, options.conversion,
        options.seed,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    save(journeys, directory)
    converting = int(journeys.converted.sum())
    touched = np.bincount(journeys.group, minlength=len(journeys.groups))
    return {
        "journeys": journeys.count,
        "touches": int(journeys.journey.size),
        "touches_per_journey": round(journeys.journey.size / max(journeys.count, 1), 3),
        "longest_journey": int(journeys.lengths.max()) if journeys.count else 0,
        "campaigns": len(journeys.groups),
        "groups": journeys.groups,
        "converting": converting,
        "conversion_rate": round(converting / max(journeys.count, 1), 4),
        "revenue": round(float(journeys.value.sum()), 2),
        "touch_share_by_campaign": [round(float(t) / max(touched.sum(), 1), 4) for t in touched],
        "journey_arrays_mib": round(sum(getattr(journeys, n).nbytes for n in ARRAYS) / 2**20, 1),
        "generate_and_build_s": round(seconds, 2),
        "generator_peak_rss_mib": round(maxrss_mib(), 1),
    }


@dataclass(frozen=True)
class Measurement:
    """One row of the table: ``model`` of ``MODELS`` with ``params`` (``Params`` fields) on
    the journeys, their campaigns folded to ``fold`` when set."""

    label: str
    model: str
    target_s: float | None
    params: dict[str, int] = field(default_factory=dict)
    fold: int | None = None
    expect_method: str | None = None  # Shapley: "exact" or "sampled"


def _consistency(journeys: Journeys, conversions: Floats, revenue: Floats) -> list[str]:
    want = (float(journeys.converted.sum()), float(journeys.value.sum()))
    got = (float(conversions.sum()), float(revenue.sum()))
    problems = []
    for what, expected, found in zip(("conversions", "revenue"), want, got, strict=True):
        if not math.isclose(found, expected, rel_tol=REL_TOLERANCE, abs_tol=1e-9):
            problems.append(f"{what}: credited {found!r}, journeys hold {expected!r}")
    return problems


def _summary(detail: dict[str, Any], conversions_total: float) -> dict[str, Any]:
    """What the table notes of a data-driven model's detail."""
    names = ("order", "states", "p_conversion", "players", "method", "samples")
    kept: dict[str, Any] = {k: detail[k] for k in names if k in detail}
    errors = detail.get("standard_error")
    if errors:
        worst = int(np.argmax(errors))
        kept |= {
            "max_standard_error": round(float(errors[worst]), 3),
            "max_standard_error_group": worst,
            "max_standard_error_of_conversions": round(
                float(errors[worst]) / conversions_total if conversions_total else 0.0, 6
            ),
        }
    return kept


def measure(
    measurement: Measurement, directory: Path, groups: tuple[str, ...], runs: int
) -> dict[str, Any]:
    """In a fresh child: load the journeys, record the baseline, time ``runs`` runs of the
    model (cached properties dropped before each), check each credit, read the peak."""
    from revhub.attribution.credit import Params, attribute

    journeys = load(directory, groups, measurement.fold)
    params = Params(**measurement.params)  # type: ignore[arg-type]
    gc.collect()
    baseline = maxrss_mib()
    rss_loaded = rss_mib()
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    sys_seconds: list[float] = []
    faults: list[int] = []
    problems: list[str] = []
    conversions = revenue = np.zeros(0)
    detail: dict[str, Any] = {}
    for _ in range(runs):
        forget_cached(journeys)
        gc.collect()
        before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        credit = attribute(measurement.model, journeys, params)
        seconds.append(time.perf_counter() - wall)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_seconds.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        sys_seconds.append(after.ru_stime - before.ru_stime)
        faults.append(after.ru_minflt - before.ru_minflt)
        problems += _consistency(journeys, credit.conversions, credit.revenue)
        conversions, revenue, detail = credit.conversions, credit.revenue, credit.detail
        del credit
    peak = maxrss_mib()
    summary = _summary(detail, float(journeys.converted.sum()))
    if measurement.expect_method and summary.get("method") != measurement.expect_method:
        problems.append(f"expected {measurement.expect_method}, ran {summary.get('method')}")
    return {
        "label": measurement.label,
        "model": measurement.model,
        "params": measurement.params,
        "campaigns": len(journeys.groups),
        "folded": measurement.fold is not None,
        "target_s": measurement.target_s,
        "seconds": [round(s, 4) for s in seconds],
        "cpu_seconds": [round(s, 4) for s in cpu_seconds],
        "sys_seconds": [round(s, 4) for s in sys_seconds],
        "minor_page_faults": faults,
        "first_s": round(seconds[0], 4),
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "meets_target": None
        if measurement.target_s is None
        else statistics.median(seconds) < measurement.target_s,
        "baseline_rss_mib": round(baseline, 1),
        "rss_after_load_mib": round(rss_loaded, 1),
        "peak_rss_mib": round(peak, 1),
        "model_peak_mib": round(peak - baseline, 1),
        "consistent": not problems,
        "problems": problems[:5],
        "detail": summary,
        "credit": {
            "conversions": [round(float(c), 4) for c in conversions],
            "revenue": [round(float(r), 2) for r in revenue],
        },
    }


def in_child(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a fresh spawned process (not forked: nothing of this one is shared)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


# --- the in-memory phase ------------------------------------------------------------------


def measurements(options: Options) -> list[Measurement]:
    """The rows: every model of ``MODELS`` (unless ``--models`` narrows them), Markov at
    orders 1 and 2, Shapley exact on the folded campaigns and sampled on all of them."""
    from revhub.attribution.credit import MODELS, RULE_BASED, Params

    limit = Params().shapley_exact_limit
    rows: list[Measurement] = []
    for name in MODELS:
        if options.models and name not in options.models:
            continue
        if name in RULE_BASED:
            rows.append(Measurement(name, name, RULE_TARGET_S))
        elif name == "markov":
            rows.append(Measurement("markov (order 1)", name, MARKOV_TARGET_S, {"markov_order": 1}))
            rows.append(Measurement("markov (order 2)", name, None, {"markov_order": 2}))
        elif name == "shapley":
            exact = options.exact_campaigns
            rows.append(
                Measurement(
                    f"shapley exact ({exact} campaigns)", name, SHAPLEY_EXACT_TARGET_S,
                    {"shapley_exact_limit": max(limit, exact)}, fold=exact, expect_method="exact",
                )
            )  # fmt: skip
            sampled = options.campaigns > limit
            rows.append(
                Measurement(
                    f"shapley {'sampled' if sampled else 'exact'} ({options.campaigns} campaigns)",
                    name, None, {"shapley_samples": options.shapley_samples},
                    expect_method="sampled" if sampled else "exact",
                )
            )  # fmt: skip
        else:  # a model added since: timed with the default parameters, no target
            rows.append(Measurement(name, name, None))
    return rows


def in_memory_phase(options: Options) -> dict[str, Any]:
    """Generate the journeys (a child), then measure each row in a child of its own."""
    with tempfile.TemporaryDirectory(prefix="revhub-bench-attribution-") as tmp:
        directory = Path(tmp)
        with console.status(
            f"generating {options.journeys:,} journeys over {options.campaigns} campaigns"
        ):
            dataset = in_child(prepare, options, directory)
        console.print(
            f"[dim]{dataset['journeys']:,} journeys, {dataset['touches']:,} touches "
            f"({dataset['touches_per_journey']:.2f} a journey, at most "
            f"{dataset['longest_journey']}), {dataset['campaigns']} campaigns, "
            f"{dataset['converting']:,} converting ({dataset['conversion_rate']:.1%}), revenue "
            f"{dataset['revenue']:,.0f}; generated and built in "
            f"{dataset['generate_and_build_s']:.1f} s (not timed)[/dim]"
        )
        idle = wait_quiet(options.quiet_wait) if options.quiet_wait > 0 else None
        if idle is not None and idle > OTHER_CPU_WARN:
            console.print(
                f"[yellow]other processes keep {idle:.2f} CPUs busy: the timings may suffer; "
                "rerun on a quiet machine.[/yellow]"
            )
        rows = []
        groups = tuple(dataset["groups"])
        for measurement in measurements(options):
            with console.status(f"{measurement.label}: {options.runs} runs"):
                row = in_child(measure, measurement, directory, groups, options.runs)
            console.print(
                f"[dim]  {row['label']}: median {row['median_s']:.3f} s, min "
                f"{row['min_s']:.3f} s, peak {row['peak_rss_mib']:.0f} MiB[/dim]"
            )
            rows.append(row)
    peak = max((r["peak_rss_mib"] for r in rows), default=0.0)
    own = max((r["model_peak_mib"] for r in rows), default=0.0)
    return {
        "dataset": dataset,
        "shapley_exact_set": f"the same journeys, each touch's campaign folded to campaign % "
        f"{options.exact_campaigns}",
        "busy_before": idle,
        "rows": rows,
        "peak_rss_mib": peak,
        "model_peak_mib": own,
        "peak_target_mib": PEAK_TARGET_MIB,
        "meets_peak_target": peak < PEAK_TARGET_MIB,
        "consistent": all(r["consistent"] for r in rows),
    }


# Phases: each takes the options and returns its part of the report, with "rows" and
# "consistent". The in-memory phase is the only one so far; an ``--api`` phase (timing
# GET /api/v1/integrations/sales/attribution on PostgreSQL, e.g. with the hub and the SQL
# fill of ``attribution_api.py``) belongs beside it in ``run_phases`` (and its table beside
# ``print_in_memory``), leaving ``in_memory_phase`` as it is.


def run_phases(options: Options) -> dict[str, dict[str, Any]]:
    return {"in_memory": in_memory_phase(options)}


# --- report -------------------------------------------------------------------------------


def _detail_cell(row: dict[str, Any], groups: list[str]) -> str:
    d = row["detail"]
    if d.get("method") == "sampled":
        return (
            f"{d['samples']} orderings, max SE {d['max_standard_error']:,.0f} conv. "
            f"({d['max_standard_error_of_conversions']:.2%}, "
            f"{groups[d['max_standard_error_group']]})"
        )
    if d.get("method") == "exact":
        return f"exact, {d['players']} players"
    if "states" in d:
        return f"{d['states']:,} states, P(conv) {d['p_conversion']:.3f}"
    return ""


def print_in_memory(phase: dict[str, Any], runs: int) -> None:
    data = phase["dataset"]
    table = Table(
        title=f"Attribution in memory: {data['journeys']:,} journeys, {data['touches']:,} "
        f"touches, {data['campaigns']} campaigns; {runs} runs each, fresh journeys per run",
        caption="1st = the first run in the fresh process (it also pays the kernel for fresh "
        "memory); peak = the child process's peak RSS (journeys, numpy and scipy included); "
        "+model = over its baseline after loading the journeys; "
        f"exact Shapley: {phase['shapley_exact_set']}",
    )
    columns = ("model", "median s", "min s", "1st s", "target", "result", "peak MiB", "+model MiB")
    for name in columns:
        table.add_column(name, justify="left" if name == "model" else "right")
    table.add_column("notes")
    for row in phase["rows"]:
        target = row["target_s"]
        if row["consistent"] is False:
            verdict = "[red]inconsistent[/red]"
        elif target is None:
            verdict = "-"
        else:
            verdict = "[green]pass[/green]" if row["meets_target"] else "[red]fail[/red]"
        peak = f"{row['peak_rss_mib']:,.0f}"
        if row["peak_rss_mib"] >= PEAK_TARGET_MIB:
            peak = f"[red]{peak}[/red]"
        table.add_row(
            row["label"], f"{row['median_s']:.3f}", f"{row['min_s']:.3f}", f"{row['first_s']:.3f}",
            "-" if target is None else f"< {target:g} s", verdict, peak,
            f"{row['model_peak_mib']:,.0f}", _detail_cell(row, data["groups"]),
        )  # fmt: skip
    console.print(table)
    verdict = "[green]pass[/green]" if phase["meets_peak_target"] else "[red]fail[/red]"
    console.print(
        f"Peak memory: {phase['peak_rss_mib']:,.0f} MiB at most (whole process; the journeys' "
        f"arrays are {data['journey_arrays_mib']:,.0f} MiB), at most "
        f"{phase['model_peak_mib']:,.0f} MiB over the baseline; target < "
        f"{PEAK_TARGET_MIB:,.0f} MiB: {verdict}"
    )
    for row in phase["rows"]:
        for problem in row["problems"]:
            console.print(f"[red]{row['label']}: {problem}[/red]")


def build_report(
    options: Options, phases: dict[str, dict[str, Any]], started: datetime
) -> dict[str, Any]:
    import scipy

    return {
        "benchmark": "attribution",
        "journeys": options.journeys,
        "campaigns": options.campaigns,
        "touches_mean": options.touches_mean,
        "conversion": options.conversion,
        "seed": options.seed,
        "runs": options.runs,
        "shapley_samples": options.shapley_samples,
        "targets": {
            "rule_based_s": RULE_TARGET_S,
            "markov_order_1_s": MARKOV_TARGET_S,
            f"shapley_exact_{options.exact_campaigns}_campaigns_s": SHAPLEY_EXACT_TARGET_S,
            "peak_rss_mib": PEAK_TARGET_MIB,
        },
        "phases": phases,
        "consistent": all(p["consistent"] for p in phases.values()),
        "parent_peak_rss_mib": round(maxrss_mib(), 1),
        **environment(started, (), ""),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "note": "each row in a fresh spawned child; a child's ru_maxrss cannot be below the "
        "parent's peak (parent_peak_rss_mib), which stays small since the parent never holds "
        "the journeys",
    }


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--journeys", type=int, default=1_000_000, help="journeys (1000000)")
    add("--campaigns", type=int, default=20, help="campaigns (20)")
    add("--touches-mean", type=float, default=4.0, help="mean touches a journey, ≥ 1 (4)")
    add("--conversion", type=float, default=0.15, help="share of converting journeys (0.15)")
    add("--seed", type=int, default=1, help="seed of the synthetic journeys (1)")
    add("--runs", type=int, default=5, help="timed runs per model (5)")
    add("--exact-campaigns", type=int, default=12, help="campaigns of exact Shapley (12)")
    add("--shapley-samples", type=int, default=2000, help="orderings of sampled Shapley (2000)")
    add("--models", nargs="+", metavar="MODEL", help="only these models of MODELS (all)")
    add("--quiet-wait", type=float, default=60.0, help="wait up to s for an idle machine (60)")
    add("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON report path")
    ns = parser.parse_args(argv)
    if min(ns.journeys, ns.campaigns, ns.runs, ns.exact_campaigns, ns.shapley_samples) <= 0:
        parser.error("counts must be positive")
    if ns.touches_mean < 1 or not 0 < ns.conversion < 1:
        parser.error("--touches-mean must be at least 1 and --conversion within (0, 1)")
    if ns.exact_campaigns > ns.campaigns:
        parser.error("--exact-campaigns cannot exceed --campaigns")
    from revhub.attribution.credit import MODELS

    unknown = set(ns.models or ()) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; of {sorted(MODELS)}")
    return Options(
        ns.journeys, ns.campaigns, ns.touches_mean, ns.conversion, ns.seed, ns.runs,
        ns.exact_campaigns, ns.shapley_samples, tuple(ns.models or ()), ns.quiet_wait,
        ns.output,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    phases = run_phases(options)
    report = build_report(options, phases, started)
    write_json(report, options.output)
    print_in_memory(phases["in_memory"], options.runs)
    console.print(f"JSON written to {options.output}")
    if not report["consistent"]:
        console.print("[bold red]FAILED: credit does not add up to the journeys[/bold red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
