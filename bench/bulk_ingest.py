"""Throughput of the bulk endpoints: leads/s through ``/leads/bulk``, touchpoints/s through
``/touchpoints/bulk``.

What it measures, for each backend and each of ``--runs`` runs on a fresh hub
(``common.sales_hub``: SQLite in embedded mode with the embedded worker, or PostgreSQL with
the Redis bus and a separate ``revhub worker``; seeded with 5 territories, 14 reps and 6
campaigns through the API):

1. **Leads**: ``--leads`` (20,000) varied leads (``common.LeadFactory``: mostly new people,
   ~10% sent again from an earlier batch, ~10% with an anonymous id; phone, country,
   industry, consent and campaign on most) in ``POST /leads/bulk`` batches of ``--batch``
   (1,000). Every item runs the six steps in a savepoint of its own. Target: ≥ 2,000 leads/s.
2. **Touchpoints**: ``--touchpoints`` (50,000) e-mail opens and clicks, web sessions and
   content downloads of the people just captured (named by e-mail, a campaign each, within
   the last 30 days) in ``POST /touchpoints/bulk`` batches of ``--batch``; each batch
   rescores the people it touched. Target: ≥ 5,000 touchpoints/s.

Batches are sent one after the other (``--concurrency 1``, as an import job does; raise it
to send several at once). The rate is accepted items over the wall time from the first
send to the last answer; every item must be accepted (201) and every batch answered 200.
The worker (embedded on SQLite, separate on PostgreSQL) drains the events the batches
publish at the same time, as it would in production. The summary is the median of the runs.

Run from the repository root::

    python bench/bulk_ingest.py [--leads 20000 --touchpoints 50000 --runs 3 --backend sqlite]

It prints a table per backend and a summary, and writes ``bench/results/bulk_ingest.json``
(gitignored); it exits 1 if any item was refused or any batch failed. ``--py-spy DIR``
records the server (and worker) with py-spy during run 1. The client, the hub, its worker,
PostgreSQL and Redis share the machine's CPUs; the ``CPU`` column says who used them.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from common import (
    BACKENDS,
    OTHER_CPU_WARN,
    REPO,
    SALES,
    CpuMeter,
    HubError,
    LeadFactory,
    SalesHub,
    add_hub_options,
    environment,
    median_of,
    percentiles_ms,
    py_spy,
    sales_hub,
    seed_sales,
    touchpoint,
    wait_quiet,
    write_json,
)

DEFAULT_OUTPUT = REPO / "bench" / "results" / "bulk_ingest.json"
TARGETS = {"leads": 2_000.0, "touchpoints": 5_000.0}  # items/s
PHASES = ("leads", "touchpoints")

console = Console() if sys.stdout.isatty() else Console(width=150)


@dataclass(frozen=True)
class Options:
    leads: int
    touchpoints: int
    batch: int
    concurrency: int
    runs: int
    timeout: float
    backends: tuple[str, ...]
    postgres_url: str
    redis_url: str
    seed: int
    output: Path
    py_spy: Path | None
    quiet_wait: float
    src: Path | None
    api_processes: int = 1


def send_batches(
    client: httpx.Client,
    path: str,
    key: str,
    batches: list[list[dict[str, Any]]],
    concurrency: int,
    on_answer: Callable[[list[dict[str, Any]], dict[str, Any]], None],
) -> tuple[float, list[float], Counter[str], list[str]]:
    """POST each batch (``concurrency`` at a time); (wall seconds, per-batch seconds,
    item outcomes, examples of refusals)."""
    from concurrent.futures import ThreadPoolExecutor

    outcomes: Counter[str] = Counter()
    examples: list[str] = []

    def post(items: list[dict[str, Any]]) -> float:
        started = time.perf_counter()
        try:
            response = client.post(f"{SALES}{path}", json={key: items})
        except httpx.HTTPError as exc:
            outcomes[f"batch {type(exc).__name__}"] += len(items)
            return time.perf_counter() - started
        took = time.perf_counter() - started
        if response.status_code != 200:
            outcomes[f"batch {response.status_code}"] += len(items)
            if len(examples) < 5:
                examples.append(f"batch {response.status_code}: {response.text[:300]}")
            return took
        answer = response.json()
        for item in answer["results"]:
            outcomes[str(item["status"])] += 1
            if item["status"] >= 300 and len(examples) < 5:
                examples.append(f"item {item['index']} {item['status']}: {item['errors']}")
        on_answer(items, answer)
        return took

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        took = list(pool.map(post, batches))
    return time.perf_counter() - started, took, outcomes, examples


def phase_result(
    phase: str,
    items: int,
    wall: float,
    took: list[float],
    outcomes: Counter[str],
    examples: list[str],
    cpu: dict[str, float] | None,
) -> dict[str, Any]:
    accepted = outcomes.get("201", 0) + outcomes.get("200", 0)
    return {
        "phase": phase,
        "items": items,
        "accepted": accepted,
        "refused": items - accepted,
        "outcomes": dict(outcomes),
        "seconds": round(wall, 3),
        "per_second": round(accepted / wall, 1),
        "target": TARGETS[phase],
        "meets_target": accepted / wall >= TARGETS[phase],
        "batch_latency": percentiles_ms(took),
        "examples": examples,
        "cpu": cpu,
    }


def one_run(hub: SalesHub, options: Options, run: int) -> dict[str, Any]:
    seeded = seed_sales(hub, seed=options.seed + run)
    factory = LeadFactory(options.seed + run, campaigns=seeded.campaigns, identify=0.0, merge=0.0)
    spy_dir = options.py_spy if run == 1 else None
    pids = {"server": hub.server_pid, "worker": hub.worker_pid}
    headers = {"X-API-Key": hub.api_key}
    results: dict[str, Any] = {"run": run}
    with httpx.Client(base_url=hub.base_url, headers=headers, timeout=options.timeout) as client:
        # Leads: built batch by batch, so repeats name people an earlier batch captured.
        lead_batches: list[list[dict[str, Any]]] = []
        kinds: Counter[str] = Counter()
        for start in range(0, options.leads, options.batch):
            batch = []
            for _ in range(min(options.batch, options.leads - start)):
                kind, body = factory.next()
                kinds[kind] += 1
                batch.append(body)
            lead_batches.append(batch)
            for body in batch:  # repeats may name these from the next batch on
                factory.confirm(body)
        dedup: Counter[str] = Counter()
        emails: list[str] = []

        def leads_answered(items: list[dict[str, Any]], answer: dict[str, Any]) -> None:
            for body, item in zip(items, answer["results"], strict=True):
                if item["status"] == 201:
                    dedup[item["result"]["steps"]["deduplication"]["outcome"]] += 1
                    emails.append(body["email"])

        meter = CpuMeter(hub)
        console.print(
            f"[dim]{hub.backend} run {run}/{options.runs}: {options.leads} leads in "
            f"{len(lead_batches)} batches[/dim]"
        )
        with py_spy(pids, spy_dir, f"bulk_ingest-{hub.backend}-leads"):
            meter.start()
            wall, took, outcomes, examples = send_batches(
                client, "/leads/bulk", "leads", lead_batches, options.concurrency, leads_answered
            )
            cpu = meter.stop()
        results["leads"] = phase_result(
            "leads", options.leads, wall, took, outcomes, examples, cpu
        ) | {"sent_as": dict(kinds), "deduplication": dict(dedup)}
        if not emails:
            raise HubError(f"no lead was accepted: {outcomes} {examples}")

        rng = random.Random(options.seed + run)
        people = sorted(set(emails))
        tps = [
            touchpoint(rng, seeded.campaigns, email=rng.choice(people))
            for _ in range(options.touchpoints)
        ]
        tp_batches = [tps[i : i + options.batch] for i in range(0, len(tps), options.batch)]
        console.print(
            f"[dim]{hub.backend} run {run}/{options.runs}: {options.touchpoints} touchpoints "
            f"for {len(people)} people in {len(tp_batches)} batches[/dim]"
        )
        meter = CpuMeter(hub)
        with py_spy(pids, spy_dir, f"bulk_ingest-{hub.backend}-touchpoints"):
            meter.start()
            wall, took, outcomes, examples = send_batches(
                client,
                "/touchpoints/bulk",
                "touchpoints",
                tp_batches,
                options.concurrency,
                lambda _items, _answer: None,
            )
            cpu = meter.stop()
        results["touchpoints"] = phase_result(
            "touchpoints", options.touchpoints, wall, took, outcomes, examples, cpu
        ) | {"people": len(people)}
    for phase in PHASES:
        r = results[phase]
        console.print(
            f"[dim]  {phase}: {r['per_second']:.0f}/s ({r['accepted']} in {r['seconds']:.1f} s, "
            f"batch p50 {r['batch_latency']['p50_ms']:.0f} ms), {r['refused']} refused[/dim]"
        )
    return results


def run_backend(backend: str, options: Options) -> list[dict[str, Any]]:
    runs = []
    for run in range(1, options.runs + 1):
        idle = wait_quiet(options.quiet_wait) if options.quiet_wait > 0 else None
        with sales_hub(
            backend,
            postgres_url=options.postgres_url,
            redis_url=options.redis_url,
            src=options.src,
            api_processes=options.api_processes,
        ) as hub:
            runs.append(one_run(hub, options, run) | {"busy_before": idle})
    return runs


def backend_report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    median = {}
    for phase in PHASES:
        rows = [r[phase] | r[phase]["batch_latency"] for r in runs]
        m = median_of(rows, ("per_second", "seconds", "p50_ms", "max_ms"))
        median[phase] = m | {
            "refused": sum(r[phase]["refused"] for r in runs),
            "target": TARGETS[phase],
            "meets_target": m["per_second"] >= TARGETS[phase],
        }
    return {"per_run": runs, "median": median}


def build_report(options: Options, results: dict[str, list], started: datetime) -> dict:
    return {
        "benchmark": "bulk_ingest",
        "endpoints": [f"POST {SALES}/leads/bulk", f"POST {SALES}/touchpoints/bulk"],
        "leads": options.leads,
        "touchpoints": options.touchpoints,
        "batch": options.batch,
        "concurrency": options.concurrency,
        "runs": options.runs,
        "seed": options.seed,
        "api_processes": options.api_processes,
        "targets_per_second": TARGETS,
        "backends": {b: backend_report(r) for b, r in results.items()},
        **environment(started, tuple(results), options.postgres_url, options.src),
        "note": f"client (httpx, 1 process), "
        f"hub (uvicorn, {options.api_processes} process(es); on PostgreSQL also a "
        f"worker process), PostgreSQL and Redis share the same {os.cpu_count()} CPUs",
    }


def _cpu_cell(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "-"
    return "/".join(f"{cpu[k]:.2f}" for k in ("client", "server", "worker", "pg_redis", "other"))


def print_tables(report: dict[str, Any]) -> None:
    for backend, data in report["backends"].items():
        table = Table(
            title=f"Bulk ingest on {backend}: batches of {report['batch']}, "
            f"{report['concurrency']} at a time, {report['runs']} runs",
            caption="items/s = accepted items over the phase's wall time; batch = ms per "
            "request; CPU c/s/w/db/o = CPUs busy in client/server/worker/PostgreSQL+Redis/other",
        )
        for name in ("run", "phase", "items", "seconds", "items/s", "batch p50", "batch max"):
            table.add_column(name, justify="right")
        table.add_column("refused", justify="right")
        table.add_column("CPU c/s/w/db/o", justify="right")
        for r in data["per_run"]:
            for phase in PHASES:
                p = r[phase]
                table.add_row(
                    str(r["run"]), phase, str(p["items"]), f"{p['seconds']:.1f}",
                    f"{p['per_second']:.0f}", f"{p['batch_latency']['p50_ms']:.0f}",
                    f"{p['batch_latency']['max_ms']:.0f}", str(p["refused"]),
                    _cpu_cell(p["cpu"]),
                )  # fmt: skip
        for phase in PHASES:
            m = data["median"][phase]
            table.add_row(
                "median", phase, "", f"{m['seconds']:.1f}", f"{m['per_second']:.0f}",
                f"{m['p50_ms']:.0f}", "", str(m["refused"]), "", style="bold",
            )  # fmt: skip
        console.print(table)
        for r in data["per_run"]:
            for phase in PHASES:
                for example in r[phase]["examples"]:
                    console.print(f"[red]run {r['run']} {phase}: {example}[/red]")
        busy = [
            f"{r['run']} ({phase})"
            for r in data["per_run"]
            for phase in PHASES
            if r[phase]["cpu"] and r[phase]["cpu"]["other"] > OTHER_CPU_WARN
        ]
        if busy:
            console.print(
                f"[yellow]{backend}: other processes kept more than {OTHER_CPU_WARN:g} CPU busy "
                f"during run(s) {', '.join(busy)}: the hub competed with work outside the "
                "benchmark; rerun on a quiet machine.[/yellow]"
            )
    summary = Table(title=f"Bulk ingest, medians of {report['runs']} runs")
    for name in ("backend", "leads/s", "target", "touchpoints/s", "target"):
        summary.add_column(name, justify="right")
    for backend, data in report["backends"].items():
        cells = []
        for phase in PHASES:
            m = data["median"][phase]
            verdict = "[green]met[/green]" if m["meets_target"] else "[red]missed[/red]"
            cells += [f"{m['per_second']:.0f}", f"≥ {m['target']:,.0f} {verdict}"]
        summary.add_row(backend, *cells)
    console.print(summary)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--leads", type=int, default=20_000, help="leads per run (20000)")
    add("--touchpoints", type=int, default=50_000, help="touchpoints per run (50000)")
    add("--batch", type=int, default=1000, help="items per request (1000, the most allowed)")
    add("--concurrency", type=int, default=1, help="batches in flight at once (1)")
    add("--runs", type=int, default=3, help="runs per backend, each on a fresh hub (3)")
    add("--timeout", type=float, default=600.0, help="per batch, s (600)")
    add_hub_options(parser, default_output=DEFAULT_OUTPUT)
    ns = parser.parse_args(argv)
    if min(ns.leads, ns.touchpoints, ns.batch, ns.concurrency, ns.runs, ns.timeout) <= 0:
        parser.error("counts and --timeout must be positive")
    if ns.batch > 1000:
        parser.error("--batch: the API takes at most 1,000 items a request")
    return Options(
        ns.leads, ns.touchpoints, ns.batch, ns.concurrency, ns.runs, ns.timeout,
        tuple(ns.backend or BACKENDS), ns.postgres, ns.redis_url, ns.seed, ns.output, ns.py_spy,
        ns.quiet_wait,
        ns.src,
        ns.api_processes,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    results: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, str] = {}
    for backend in options.backends:  # one backend failing keeps the other's figures
        try:
            results[backend] = run_backend(backend, options)
        except HubError as exc:
            console.print(f"[bold red]{backend}: benchmark failed:[/bold red] {exc}")
            failures[backend] = str(exc)
    if not results:
        return 2
    report = build_report(options, results, started) | {"failures": failures}
    write_json(report, options.output)
    print_tables(report)
    console.print(f"JSON written to {options.output}")
    refused = sum(
        data["median"][phase]["refused"] for data in report["backends"].values() for phase in PHASES
    )
    if refused:
        console.print(f"[bold red]FAILED: {refused} items refused or in failed batches[/bold red]")
        return 1
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
