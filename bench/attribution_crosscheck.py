"""Cross-check of revhub's attribution models against two independent packages:
ChannelAttribution 2.2.5 (C++ core; heuristics and the Markov removal effect) and
marketing-attribution-models 2.1.1 ("MAM", pure Python on polars; heuristics, position-based,
time decay, Markov removal effects, Shapley).

Neither package is a project dependency: run this from a separate venv that has both and the
project installed (bench/README.md, "Attribution cross-check"):

    /tmp/cavenv/bin/python bench/attribution_crosscheck.py [--nsim 50000000 --seeds 2]

Seeded synthetic journeys (three sets: 10k journeys on 8 channels, 200k on 20, and 50k on 12
with repeated channels and loops in the paths) go through our engine and through the same
journeys in each package's input format. Targets: heuristics agree to 1e-6 (conversions
absolute, value relative to the total), Markov conversions within 1 % per channel.

What ChannelAttribution computes (read from src/cypack/functions.cpp of the sdist):

* Input: one row per distinct path "a > b > c" with total_conversions, total_conversion_value
  and total_null (integer counts; value summed over the path's converting journeys).
* heuristic_models (heuristic_models_cpp): first touch = first channel of the path, last
  touch = last channel; linear = each occurrence of a channel earns conversions / path length
  (a channel touched k times earns k/n, as ours). Value likewise.
* markov_model: channels are numbered, then the path is cut into states, the windows of
  ``order`` consecutive channels (a path shorter than ``order`` is one state, the whole path);
  consecutive identical states are merged (``if(ichannel!=ichannel_old)``), so "a > a > b"
  is start → a → b at order 1 (no self-loops). Transition counts are weighted by conversions +
  nulls of the path; the last state goes to (conversion) with total_conversions and to (null)
  with total_null. The chain is then *simulated* (W_markov_model_1): nsim_start/nfold walks
  per fold from start, each stopped at conversion, null, or after max_step steps (default:
  the longest observed path; a walk stopped there counts as no conversion). For each walk
  that converts, every channel it visited (at order k every channel of every visited tuple)
  gets T[c] += 1 and, with var_value, V[c] += a value drawn from the values of the converting
  paths that end in the walk's last state (weighted by their conversions). Result:
  conversions_c = T_c / Σ T · total conversions, value_c = V_c / Σ V · total value, and
  removal_effects_conversion_c = T_c / #converting walks (out_more=True), i.e.
  P(walk visits c | it converts). Only the fold closest to the median is returned.

Why that equals our exact removal effect: removing c (a dead end whose outflow goes to null)
stops exactly the converting walks that visit c, so P(conv without c) = P(conv) -
P(conv and visit c) and RE_c = 1 - P(conv without c)/P(conv) = P(visit c | conv). The value
removal effect is the same with each conversion weighted by its expected value, which both
take as the mean value of the converting journeys ending in the walk's last state. Merging
repeated states does not change absorption probabilities (a self-loop only delays the walk),
and our order-k prefix states (a, ·) lead into (a, b) with exactly the path counts that
ChannelAttribution's start → (a, b) has, so the two chains give the same probabilities.
The remaining differences are Monte-Carlo noise (measured here) and the max_step truncation,
which this script switches off (``--max-step``) and measures once with the default.

What MAM 2.1.1 computes (mam/models/*.py), fed the same journeys as format "journey" with
each touch's hours to the close as time_till_conv; run once without a value column (a
conversion is worth 1) and once with it:

* first/last click, linear, position_based (1 touch 100 %, 2 touches 50/50, else 40/20/40
  with the 20 % split over the middle touches), time_decay (0.5^(hours / half_life_hours),
  normalised per journey; 168 h = our 7 days): the same definitions as ours.
* Markov: order 1, self-transitions dropped, removing c sends the transitions into c to
  null, exact via the fundamental matrix: the same removal effects as ours. Its credit is
  not ours: each converting journey's conversion (or value) is split over its own touches
  in proportion to the removal effect of each touch's channel, where ours (and
  ChannelAttribution) share all conversions by RE_c / Σ RE; revenue uses the conversion RE.
* Shapley: for each converting channel set S (sorted distinct channels, cut to the last
  ``max_size`` of them in sorted order; this script passes None), the Shapley value of the
  game on S's channels with v(T) = conversion rate of the journeys whose set is exactly T;
  S's conversions are split in proportion to it. Ours is one game over all channels with
  v(S) = Σ_{T⊆S} rate(T) (Zhao et al.), whose Shapley value is φ_c = Σ_{T∋c} rate(T)/|T|,
  and all conversions are shared by φ_c / Σ φ. The script restates MAM's rule in numpy (it
  reproduces MAM) and checks ours against the closed form; it does not force agreement.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import multiprocessing
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from importlib import metadata
from itertools import combinations
from math import factorial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy.optimize import brentq

from revhub.attribution.credit import Params, attribute
from revhub.attribution.journeys import Floats, Ints, Journeys

ROOT = Path(__file__).resolve().parent
OUTPUT = ROOT / "results" / "attribution_crosscheck.json"
HEURISTIC_TOLERANCE = 1e-6
MARKOV_TOLERANCE = 0.01
HEURISTICS = {"first_touch": "first_touch", "last_touch": "last_touch", "linear": "linear_touch"}
console = Console(width=max(Console().width, 150))
T = TypeVar("T")


# --- synthetic journeys ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One synthetic set: ``journeys`` journeys on ``channels`` channels of Zipf-like
    popularity, path lengths 1..``max_length`` (geometric), distinct channels per path unless
    ``repeats`` (then channels are drawn with replacement and a touch repeats the one before it
    with probability ``repeat_rate``, so both "a > a" and loops "a > b > a" occur)."""

    name: str
    journeys: int
    channels: int
    max_length: int
    conversion_rate: float
    repeats: bool
    seed: int
    repeat_rate: float = 0.0


SPECS = (
    Spec("small", 10_000, 8, 8, 0.12, repeats=False, seed=11),
    Spec("large", 200_000, 20, 10, 0.25, repeats=False, seed=12),
    Spec("repeats", 50_000, 12, 10, 0.18, repeats=True, seed=13, repeat_rate=0.25),
)


@dataclass(frozen=True)
class Synthetic:
    spec: Spec
    journeys: Journeys
    paths: list[str]  # per journey, "ch03 > ch01 > ch03"
    hours: list[str]  # per journey, hours from each touch to the close (MAM's time_till_conv)


def generate(spec: Spec) -> Synthetic:
    rng = np.random.default_rng(spec.seed)
    n, c = spec.journeys, spec.channels
    groups = tuple(f"ch{k:02d}" for k in range(c))
    popularity = 1.0 / np.arange(1, c + 1) ** 0.8
    rng.shuffle(popularity)
    popularity /= popularity.sum()
    cap = spec.max_length if spec.repeats else min(spec.max_length, c)
    lengths = np.minimum(rng.geometric(0.3, n), cap).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    journey = np.repeat(np.arange(n), lengths)
    position = np.arange(journey.size) - starts[journey]
    if spec.repeats:
        group = rng.choice(c, size=journey.size, p=popularity)
        again = (rng.random(journey.size) < spec.repeat_rate) & (position > 0)
        for place in range(1, cap):  # in order, so runs "a > a > a" chain up
            touch = np.flatnonzero(again & (position == place))
            group[touch] = group[touch - 1]
    else:  # without replacement, by popularity: Gumbel top-k
        keys = np.log(popularity) + rng.gumbel(size=(n, c))
        group = np.argsort(-keys, axis=1)[journey, position]
    gaps = np.where(position == 0, 0.0, rng.exponential(3.0, journey.size))
    elapsed = np.cumsum(gaps)
    at = rng.uniform(0.0, 300.0, n)[journey] + elapsed - elapsed[starts][journey]

    # Conversion: logistic in the distinct channels touched and the last one; value:
    # log-normal, its mean depending on the last channel (so value and conversion removal
    # effects differ).
    effect, closing, worth = rng.normal(0, 0.7, c), rng.normal(0, 0.5, c), rng.normal(0, 0.4, c)
    distinct = np.unique(journey * c + group)
    last = group[starts + lengths - 1]
    score = np.bincount(distinct // c, weights=effect[distinct % c], minlength=n) + closing[last]

    def rate(shift: float) -> float:
        return float(np.mean(1 / (1 + np.exp(-(score + shift)))) - spec.conversion_rate)

    shift = brentq(rate, -30.0, 30.0)
    converted = rng.random(n) < 1 / (1 + np.exp(-(score + shift)))
    value = np.where(converted, np.round(rng.lognormal(np.log(8000) + worth[last], 1.0), 2), 0.0)
    closed_at = np.where(converted, at[starts + lengths - 1] + rng.exponential(2.0, n), np.nan)
    journeys = Journeys.build(
        journey=journey,
        group=group,
        at=at,
        converted=converted,
        value=value,
        groups=groups,
        closed_at=closed_at,
    )
    names = np.asarray(groups, dtype=object)[journeys.group]
    ends = journeys.starts[1:]
    paths = [" > ".join(p) for p in np.split(names, ends)]
    last_at = journeys.at[journeys.starts + journeys.lengths - 1]
    anchor = np.where(np.isfinite(journeys.closed_at), journeys.closed_at, last_at)
    age = (anchor[journeys.journey] - journeys.at) * 24.0
    hours = [" > ".join(repr(float(h)) for h in a) for a in np.split(age, ends)]
    return Synthetic(spec, journeys, paths, hours)


def aggregated(data: Synthetic) -> pd.DataFrame:
    """ChannelAttribution's input: one row per distinct path."""
    j = data.journeys
    frame = pd.DataFrame(
        {
            "path": data.paths,
            "conversions": j.converted.astype(np.int64),
            "value": j.value,
            "null": (~j.converted).astype(np.int64),
        }
    )
    grouped = frame.groupby("path", sort=False).agg(
        total_conversions=("conversions", "sum"),
        total_conversion_value=("value", "sum"),
        total_null=("null", "sum"),
    )
    return grouped.reset_index()


# --- comparison helpers ---------------------------------------------------------------------


def by_group(groups: Sequence[str], names: Sequence[Any], values: Sequence[Any]) -> Floats:
    """A package's per-channel column as an array indexed like ``groups`` (0 where absent)."""
    found = {str(k): float(v) for k, v in zip(names, values, strict=True)}
    return np.array([found.get(g, 0.0) for g in groups])


def difference(ours: Floats, theirs: Floats, total: float) -> dict[str, float]:
    """max |ours - theirs|, that over the total, and the largest per-channel relative gap
    (channels with at least 0.1 % of the total)."""
    gap = np.abs(ours - theirs)
    big = np.abs(ours) >= 1e-3 * abs(total)
    relative = gap[big] / np.abs(ours[big]) if big.any() else np.zeros(1)
    return {
        "max_abs": float(gap.max()),
        "max_abs_over_total": float(gap.max() / abs(total)) if total else 0.0,
        "max_rel": float(relative.max()),
        "l1_over_total": float(gap.sum() / abs(total)) if total else 0.0,
    }


def quiet(call: Callable[[], T]) -> tuple[T, str]:
    """Run ``call`` with stdout captured (ChannelAttribution prints banners and progress)."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        result = call()
    return result, buffer.getvalue()


def fmt(x: float) -> str:
    return f"{x:.2e}" if x and (abs(x) < 1e-3 or abs(x) >= 1e5) else f"{x:.4f}"


def ok(flag: bool) -> str:
    return "[green]ok[/green]" if flag else "[red]MISS[/red]"


# --- ChannelAttribution ---------------------------------------------------------------------


def channel_attribution() -> Any:
    return quiet(lambda: importlib.import_module("ChannelAttribution"))[0]


def ca_heuristics(data: Synthetic, frame: pd.DataFrame) -> dict[str, Any]:
    ca = channel_attribution()
    j = data.journeys
    out, _ = quiet(
        lambda: ca.heuristic_models(
            frame,
            "path",
            "total_conversions",
            var_value="total_conversion_value",
            flg_pro=False,
        )
    )
    results: dict[str, Any] = {}
    for ours_name, theirs in HEURISTICS.items():
        credit = attribute(ours_name, j)
        conversions = by_group(j.groups, out["channel_name"], out[f"{theirs}_conversions"])
        value = by_group(j.groups, out["channel_name"], out[f"{theirs}_value"])
        results[ours_name] = {
            "conversions": difference(credit.conversions, conversions, float(j.converted.sum())),
            "value": difference(credit.revenue, value, float(j.value.sum())),
        }
    return results


def ca_markov_run(
    frame: pd.DataFrame, order: int, seed: int, nsim: int, max_step: int | None
) -> dict[str, Any]:
    """One markov_model call (in a worker process): nfold=1, so the single fold of nsim
    walks is the result and the convergence loop stops after one pass."""
    ca = channel_attribution()
    started = time.perf_counter()
    out, log = quiet(
        lambda: ca.markov_model(
            frame,
            "path",
            "total_conversions",
            var_value="total_conversion_value",
            var_null="total_null",
            order=order,
            nsim_start=nsim,
            max_step=max_step,
            out_more=True,
            nfold=1,
            ncore=1,
            seed=seed,
            verbose=True,
            flg_pro=False,
        )
    )
    result, removal = out["result"], out["removal_effects"]
    return {
        "seconds": time.perf_counter() - started,
        "names": [str(x) for x in result["channel_name"]],
        "conversions": [float(x) for x in result["total_conversions"]],
        "value": [float(x) for x in result["total_conversion_value"]],
        "removal_names": [str(x) for x in removal["channel_name"]],
        "removal": [float(x) for x in removal["removal_effects_conversion"]],
        "value_removal": [float(x) for x in removal["removal_effects_conversion_value"]],
        "log": [line for line in log.splitlines() if line.startswith("Percentage")],
    }


def _run(args: tuple[pd.DataFrame, int, int, int, int | None]) -> dict[str, Any]:
    return ca_markov_run(*args)


def capped_removal(j: Journeys, cap: int) -> tuple[Floats, int]:
    """What ChannelAttribution's order-1 removal effect converges to when a walk is stopped
    after ``cap`` channel states (default max_step: the longest path with repeats merged,
    plus one): P(visits c | converts within the cap), from the order-1 chain with repeated
    channels merged, propagated step by step. Also returns the default cap."""
    c = len(j.groups)
    new = np.ones(j.group.size, dtype=np.bool_)
    new[1:] = (j.group[1:] != j.group[:-1]) | (j.position[1:] == 0)
    group, journey = j.group[new], j.journey[new]
    first = np.ones(group.size, dtype=np.bool_)
    first[1:] = journey[1:] != journey[:-1]
    last = np.ones(group.size, dtype=np.bool_)
    last[:-1] = journey[1:] != journey[:-1]
    start, won, lost = c, c + 1, c + 2  # rows 0..c-1 channels, c start; +1 and +2 absorbing
    source = np.concatenate((np.where(first, start, np.roll(group, 1)), group[last]))
    target = np.concatenate((group, np.where(j.converted, won, lost)))
    counts = np.bincount(source * (c + 3) + target, minlength=(c + 1) * (c + 3))
    counts = counts.reshape(c + 1, c + 3).astype(float)
    probability = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    q, r = probability[:, : c + 1], probability[:, won]
    default_cap = int(np.bincount(journey).max()) + 1
    cap = cap or default_cap

    def converting(dead: int | None) -> float:
        alive = np.ones(c + 1)
        if dead is not None:
            alive[dead] = 0.0
        x, total = np.eye(c + 1)[start], 0.0
        for _ in range(cap):  # x: where the walk is after 1, 2, ... channel states
            x = (x * alive) @ q
            total += float((x * alive) @ r)
        return total

    whole = converting(None)
    return np.array([1 - converting(k) / whole for k in range(c)]), default_cap


def capped(j: Journeys, order: int, removal: Floats, walks: float) -> dict[str, Any]:
    """ChannelAttribution with its default max_step against the removal effect of walks cut
    at that cap (order 1), to show the gap to the exact value is the cap and nothing else."""
    if order != 1:
        return {}
    expected, cap = capped_removal(j, 0)
    error = np.sqrt(np.maximum(expected * (1 - expected), 1e-12) / walks)
    gap = np.abs(expected - removal)
    return {
        "default_cap": cap,
        "capped_removal": expected.tolist(),
        "vs_capped_max_abs": float(gap.max()),
        "vs_capped_max_z": float((gap / error).max()),
    }


def ca_markov(
    data: Synthetic,
    frame: pd.DataFrame,
    order: int,
    seeds: int,
    nsim: int,
    max_step: int | None,
    pool: ProcessPoolExecutor,
) -> dict[str, Any]:
    j = data.journeys
    started = time.perf_counter()
    credit = attribute("markov", j, Params(markov_order=order))
    ours_seconds = time.perf_counter() - started
    runs = list(pool.map(_run, [(frame, order, s, nsim, max_step) for s in range(seeds)]))
    g = j.groups

    def column(run: dict[str, Any], key: str) -> Floats:
        names = run["removal_names"] if "removal" in key else run["names"]
        return by_group(g, names, run[key])

    def mean(key: str) -> Floats:
        return np.asarray(np.mean([column(r, key) for r in runs], axis=0), dtype=np.float64)

    conversions, value = mean("conversions"), mean("value")
    removal, value_removal = mean("removal"), mean("value_removal")
    ours_removal = np.array(credit.detail["removal_effects"])
    ours_value_removal = np.array(credit.detail["value_removal_effects"])
    p_conversion = float(credit.detail["p_conversion"])
    # Monte-Carlo standard error of ChannelAttribution's removal effect, a proportion among
    # about seeds · nsim · P(conversion) converting walks.
    walks = seeds * nsim * p_conversion
    error = np.sqrt(np.maximum(ours_removal * (1 - ours_removal), 1e-12) / walks)
    # The value removal effect is a ratio Σ v·[visits c] / Σ v over those walks; if a walk's
    # value is about independent of its channels, its error is √(1 + cv²) times larger.
    won = j.value[j.converted]
    inflate = 1 + float(won.var() / won.mean() ** 2) if won.size else 1.0
    value_error = np.sqrt(
        inflate * np.maximum(ours_value_removal * (1 - ours_value_removal), 1e-12) / walks
    )
    total_conv, total_value = float(j.converted.sum()), float(j.value.sum())
    spread: dict[str, float] = {}
    if len(runs) > 1:
        first, second = runs[0], runs[1]
        spread = {
            "conversions_max_rel": difference(
                column(first, "conversions"), column(second, "conversions"), total_conv
            )["max_rel"],
            "value_max_rel": difference(
                column(first, "value"), column(second, "value"), total_value
            )["max_rel"],
        }
    return {
        "order": order,
        "max_step": max_step,
        "nsim_per_seed": nsim,
        "seeds": seeds,
        "ours_seconds": ours_seconds,
        "ca_seconds": [r["seconds"] for r in runs],
        "ca_log": runs[0]["log"],
        "p_conversion": p_conversion,
        "observed_rate": float(j.converted.mean()),
        "conversions": difference(credit.conversions, conversions, total_conv),
        "value": difference(credit.revenue, value, total_value),
        "removal_max_abs": float(np.abs(ours_removal - removal).max()),
        "removal_max_z": float((np.abs(ours_removal - removal) / error).max()),
        "value_removal_max_abs": float(np.abs(ours_value_removal - value_removal).max()),
        "value_removal_max_z_approx": float(
            (np.abs(ours_value_removal - value_removal) / value_error).max()
        ),
        "ca_seed_spread": spread,
        **(capped(j, order, removal, walks) if max_step is None else {}),
        "channels": {
            name: {
                "ours_re": float(ours_removal[k]),
                "ca_re": float(removal[k]),
                "ours_value_re": float(ours_value_removal[k]),
                "ca_value_re": float(value_removal[k]),
                "ours_conversions": float(credit.conversions[k]),
                "ca_conversions": float(conversions[k]),
                "ours_revenue": float(credit.revenue[k]),
                "ca_revenue": float(value[k]),
            }
            for k, name in enumerate(g)
        },
    }


# --- marketing-attribution-models -----------------------------------------------------------


def mam_frame(data: Synthetic) -> pd.DataFrame:
    j = data.journeys
    return pd.DataFrame(
        {
            "journey_id": [f"j{k}" for k in range(j.count)],
            "channels": data.paths,
            "time_till_end": data.hours,
            "has_conv": j.converted,
            "value": j.value,
        }
    )


def mam_results(data: Synthetic, shapley: bool) -> dict[str, Any]:
    """MAM's models with conversions (no value column: each converting journey is worth 1)
    and with revenue (value column), against ours; Markov removal effects side by side."""
    mam = importlib.import_module("mam")
    j = data.journeys
    frame = mam_frame(data)
    common = {
        "format_type": "journey",
        "channels_colname": "channels",
        "journey_with_conv_colname": "has_conv",
        "user_id_colname": "journey_id",
        "time_till_conv_colname": "time_till_end",
        "path_separator": " > ",
    }
    counting = mam.MAM(frame, **common)
    valuing = mam.MAM(frame, conversion_value_colname="value", **common)
    runs: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "first_touch": ("first_touch", lambda m: m.run_first_click()),
        "last_touch": ("last_touch", lambda m: m.run_last_click()),
        "linear": ("linear", lambda m: m.run_linear()),
        "position_based": ("position_based", lambda m: m.run_position_based()),
        "time_decay (7 d = 168 h)": ("time_decay", lambda m: m.run_time_decay(168.0)),
        "markov (credit)": ("markov", lambda m: m.run_markov()),
    }
    if shapley:
        runs["shapley (max_size=None)"] = (
            "shapley",
            lambda m: m.run_shapley(max_size=None, value_column="conv_rate"),
        )
    total_conv, total_value = float(j.converted.sum()), float(j.value.sum())
    results: dict[str, Any] = {}
    shapley_conversions: Floats | None = None
    markov_conversions: Floats | None = None
    for label, (ours_name, run) in runs.items():
        credit = attribute(ours_name, j, Params(half_life_days=7.0))
        theirs = []
        for instance in (counting, valuing):
            table = run(instance).to_pandas()
            theirs.append(by_group(j.groups, table["channels"].astype(str), table["attribution"]))
        if ours_name == "shapley":
            shapley_conversions = theirs[0]
        if ours_name == "markov":
            markov_conversions = theirs[0]
        results[label] = {
            "conversions": difference(credit.conversions, theirs[0], total_conv),
            "value": difference(credit.revenue, theirs[1], total_value),
            "ours_conversions": credit.conversions.tolist(),
            "mam_conversions": theirs[0].tolist(),
        }
    markov = counting.run_markov()
    removal_table = markov.metadata["removal_effect"]
    theirs_removal = by_group(
        j.groups, [str(x) for x in removal_table.index], removal_table["removal_effect"]
    )
    ours_removal = np.array(attribute("markov", j).detail["removal_effects"])
    results["markov removal effects (order 1)"] = {
        "removal_max_abs": float(np.abs(ours_removal - theirs_removal).max()),
        "ours": ours_removal.tolist(),
        "mam": theirs_removal.tolist(),
    }
    # MAM's Markov credit restated: each converting journey's conversion is split over its
    # own touches in proportion to the removal effect of each touch's channel.
    weight = ours_removal[j.group]
    per_journey = np.bincount(j.journey, weights=weight, minlength=j.count)
    share = np.where(per_journey[j.journey] > 0, weight / per_journey[j.journey], 0.0)
    restated = j.per_group(share * j.converted[j.journey])
    results["markov credit: MAM's definition restated"] = {
        "max_abs_vs_mam": float(np.abs(restated - markov_conversions).max())
        if markov_conversions is not None
        else None,
    }
    if shapley_conversions is not None:
        results["shapley: MAM's definition restated"] = mam_shapley_definition(
            data, shapley_conversions
        )
    return results


def channel_sets(j: Journeys) -> tuple[Ints, Ints]:
    """Each journey's set of channels as a bit mask, and the distinct masks' indices."""
    masks = np.bitwise_or.reduceat(np.left_shift(1, j.group), j.starts)
    sets, which = np.unique(masks, return_inverse=True)
    return sets, which.reshape(-1)


def mam_shapley_definition(data: Synthetic, mam_conversions: Floats) -> dict[str, Any]:
    """MAM 2.1.1's Shapley (models/shapley.py) restated in numpy, to show what it computes:
    for every converting channel set S, the Shapley value of the game on S's channels with
    v(T) = conversion rate of the journeys whose set is exactly T (not Σ over subsets);
    S's conversions are then split in proportion to those values."""
    j = data.journeys
    sets, which = channel_sets(j)
    seen = np.bincount(which)
    conversions = np.bincount(which, weights=j.converted)
    rate = dict(zip(sets.tolist(), (conversions / seen).tolist(), strict=True))
    credit = np.zeros(len(j.groups))
    for mask, converted in zip(sets.tolist(), conversions.tolist(), strict=True):
        if converted == 0:
            continue
        players = [b for b in range(len(j.groups)) if mask >> b & 1]
        n = len(players)
        phi = np.zeros(n)
        for size in range(1, n + 1):
            for team in combinations(range(n), size):
                bits = sum(1 << players[i] for i in team)
                worth = rate.get(bits, 0.0)
                for i in range(n):
                    if i in team:
                        phi[i] += factorial(size - 1) * factorial(n - size) / factorial(n) * worth
                    else:
                        phi[i] -= factorial(size) * factorial(n - size - 1) / factorial(n) * worth
        if phi.sum() != 0:
            credit[players] += converted * phi / phi.sum()
    return {
        "max_abs_vs_mam": float(np.abs(credit - mam_conversions).max()),
    }


def shapley_closed_form(j: Journeys) -> dict[str, Any]:
    """Our Shapley against the closed form of its own game: v(S) = Σ_{T⊆S} rate(T) is a sum
    of unanimity games, so φ_c = Σ_{T∋c} rate(T)/|T| (likewise with value per journey)."""
    sets, which = channel_sets(j)
    seen = np.bincount(which)
    per_set = np.stack(
        (np.bincount(which, weights=j.converted) / seen, np.bincount(which, weights=j.value) / seen)
    )
    members = (sets[:, None] >> np.arange(len(j.groups))) & 1
    phi = (per_set / members.sum(axis=1)) @ members
    totals = np.array([j.converted.sum(), j.value.sum()], dtype=float)
    expected = totals[:, None] * phi / phi.sum(axis=1, keepdims=True)
    credit = attribute("shapley", j)
    error = np.array(credit.detail["standard_error"])
    gap = np.abs(credit.conversions - expected[0])
    return {
        "method": credit.detail["method"],
        "conversions": difference(credit.conversions, expected[0], float(totals[0])),
        "value": difference(credit.revenue, expected[1], float(totals[1])),
        "max_z": float((gap / error).max()) if error.any() else None,
    }


# --- report ---------------------------------------------------------------------------------


def report_set(name: str, result: dict[str, Any]) -> bool:
    good = True
    info = result["set"]
    console.rule(
        f"[bold]{name}[/bold]: {info['journeys']:,} journeys, {info['touches']:,} touches, "
        f"{info['channels']} channels, {info['conversion_rate']:.1%} converting, "
        f"{info['distinct_paths']:,} distinct paths"
    )
    table = Table(title="Heuristics: ours vs ChannelAttribution heuristic_models")
    for col in ("model", "max |Δ| conv", "max |Δ| value", "max |Δ| value / total", "1e-6"):
        table.add_column(col, justify="right")
    for model, d in result["ca_heuristics"].items():
        agree = (
            d["conversions"]["max_abs"] <= HEURISTIC_TOLERANCE
            and d["value"]["max_abs_over_total"] <= HEURISTIC_TOLERANCE
        )
        good &= agree
        table.add_row(
            model,
            fmt(d["conversions"]["max_abs"]),
            fmt(d["value"]["max_abs"]),
            fmt(d["value"]["max_abs_over_total"]),
            ok(agree),
        )
    console.print(table)

    table = Table(title="Markov: ours (exact) vs ChannelAttribution markov_model (simulated)")
    for col in (
        "order",
        "max_step",
        "walks",
        "max |Δ| conv",
        "max rel Δ conv",
        "L1 Δ / conv",
        "max rel Δ value",
        "max |Δ| RE",
        "max |z| RE",
        "max |z| value RE (≈)",
        "CA seed spread conv / value",
        "< 1 %",
    ):
        table.add_column(col, justify="right")
    for run in result["ca_markov"]:
        agree = run["conversions"]["max_rel"] < MARKOV_TOLERANCE
        if run["max_step"] is not None:
            good &= agree
        spread = run["ca_seed_spread"]
        table.add_row(
            str(run["order"]),
            "default" if run["max_step"] is None else str(run["max_step"]),
            f"{run['seeds']} x {run['nsim_per_seed']:,}",
            fmt(run["conversions"]["max_abs"]),
            f"{run['conversions']['max_rel']:.3%}",
            f"{run['conversions']['l1_over_total']:.3%}",
            f"{run['value']['max_rel']:.3%}",
            fmt(run["removal_max_abs"]),
            f"{run['removal_max_z']:.2f}",
            f"{run['value_removal_max_z_approx']:.2f}",
            f"{spread['conversions_max_rel']:.3%} / {spread['value_max_rel']:.3%}"
            if spread
            else "-",
            ok(agree),
        )
    console.print(table)
    for run in result["ca_markov"]:
        for line in run["ca_log"]:
            console.print(f"ChannelAttribution, order {run['order']}: {line}")
        if "default_cap" in run:
            console.print(
                f"  default max_step: walks stop after {run['default_cap']} channel states; "
                f"the removal effect of walks cut there differs from ChannelAttribution's by "
                f"max {fmt(run['vs_capped_max_abs'])} (|z| {run['vs_capped_max_z']:.2f}), "
                f"from ours (uncut) by {fmt(run['removal_max_abs'])} "
                f"(|z| {run['removal_max_z']:.2f})"
            )
    for run in result["ca_markov"]:
        if run["max_step"] is None:
            continue
        table = Table(title=f"Markov order {run['order']}: removal effects and credit")
        for col in (
            "channel",
            "RE ours",
            "RE CA",
            "value RE ours",
            "value RE CA",
            "conv ours",
            "conv CA",
            "revenue ours",
            "revenue CA",
        ):
            table.add_column(col, justify="right")
        for channel, row in run["channels"].items():
            table.add_row(
                channel,
                *(f"{row[k]:.4f}" for k in ("ours_re", "ca_re", "ours_value_re", "ca_value_re")),
                f"{row['ours_conversions']:.1f}",
                f"{row['ca_conversions']:.1f}",
                f"{row['ours_revenue']:,.0f}",
                f"{row['ca_revenue']:,.0f}",
            )
        console.print(table)

    if "mam" in result:
        table = Table(title="marketing-attribution-models 2.1.1 vs ours")
        for col in ("model", "max |Δ| conv", "max rel Δ conv", "max |Δ| value / total"):
            table.add_column(col, justify="right")
        for model, d in result["mam"].items():
            if "conversions" in d:
                table.add_row(
                    model,
                    fmt(d["conversions"]["max_abs"]),
                    f"{d['conversions']['max_rel']:.3%}",
                    fmt(d["value"]["max_abs_over_total"]),
                )
            elif "removal_max_abs" in d:
                table.add_row(model, f"max |Δ RE| {fmt(d['removal_max_abs'])}", "", "")
            else:
                table.add_row(model, f"vs MAM {fmt(d['max_abs_vs_mam'])}", "", "")
        console.print(table)
    closed = result["shapley_closed_form"]
    console.print(
        f"Our Shapley ({closed['method']}) vs its closed form Σ_T∋c rate(T)/|T|: "
        f"max |Δ| conv {fmt(closed['conversions']['max_abs'])}, "
        f"max |Δ| value / total {fmt(closed['value']['max_abs_over_total'])}"
        + (f", max |z| {closed['max_z']:.2f}" if closed["max_z"] is not None else "")
    )
    return good


def versions() -> dict[str, str]:
    found = {}
    for package in ("ChannelAttribution", "marketing-attribution-models", "numpy", "pandas"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    found["python"] = platform.python_version()
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nsim", type=float, default=5e7, help="ChannelAttribution walks/seed")
    parser.add_argument("--seeds", type=int, default=2, help="ChannelAttribution seeds (≥ 2)")
    parser.add_argument("--max-step", type=int, default=1000, help="walk cap (default: none)")
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sets", nargs="+", default=[s.name for s in SPECS])
    parser.add_argument("--skip-mam", action="store_true")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    nsim = int(args.nsim)
    output: dict[str, Any] = {
        "versions": versions(),
        "nsim_per_seed": nsim,
        "seeds": args.seeds,
        "max_step": args.max_step,
        "sets": {},
    }
    good = True
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        for spec in SPECS:
            if spec.name not in args.sets:
                continue
            started = time.perf_counter()
            data = generate(spec)
            frame = aggregated(data)
            j = data.journeys
            result: dict[str, Any] = {
                "set": {
                    **asdict(spec),
                    "touches": int(j.journey.size),
                    "conversion_rate": float(j.converted.mean()),
                    "distinct_paths": len(frame),
                    "revenue": float(j.value.sum()),
                },
                "ca_heuristics": ca_heuristics(data, frame),
                "ca_markov": [
                    ca_markov(data, frame, order, args.seeds, nsim, args.max_step, pool)
                    for order in args.orders
                ],
            }
            if spec.name == "repeats":  # the default walk cap, to show its bias
                result["ca_markov"].append(
                    ca_markov(data, frame, 1, args.seeds, nsim // 4, None, pool)
                )
            if not args.skip_mam and importlib.util.find_spec("mam") is not None:
                result["mam"] = mam_results(data, shapley=spec.channels <= 8)
            result["shapley_closed_form"] = shapley_closed_form(j)
            result["seconds"] = time.perf_counter() - started
            output["sets"][spec.name] = result
            good &= report_set(spec.name, result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    console.print(f"\nWrote {args.output}; targets {'met' if good else '[red]MISSED[/red]'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
