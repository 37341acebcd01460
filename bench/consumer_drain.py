"""CPU the worker's consumers spend on what lead capture and touchpoints publish.

What it measures: for each active consumer (``crm-sync``, ``analytics-pipeline``,
``alert-system``, ``webhooks``), the CPU seconds this process spends draining the events
that ``--leads`` bulk leads and ``--touchpoints`` bulk touchpoints published, and its events
per CPU second. In the embedded hub the consumers share one interpreter lock with the API,
so every CPU second here is one the request pipeline does not get.

How: for each of ``--runs`` runs, an app on a fresh SQLite file (or the PostgreSQL database
``--postgres``, schema dropped, and the Redis bus) is built in this process with the
embedded worker off, seeded through the API (the campaigns, territories and reps of
``bench/lead_capture.py``), and loaded through ``POST …/leads/bulk`` and
``…/touchpoints/bulk`` (1,000 a request). Then, with nothing else running, the Redis relay
(PostgreSQL only) and each consumer in turn poll until nothing is left, timed with
``time.process_time()``.

Run from the repository root::

    python bench/consumer_drain.py [--leads 3000 --touchpoints 10000 --runs 3 --backend sqlite]

To compare with other code, put its ``src`` first on the path:
``PYTHONPATH=/tmp/snap/src python bench/consumer_drain.py`` (a ``git archive`` snapshot). It
prints a table and writes ``bench/results/consumer_drain.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from common import (
    CAMPAIGNS,
    REPO,
    LeadFactory,
    add_in_process_options,
    environment,
    in_process_hub,
    post_json,
    seed_team,
    touchpoint,
    write_json,
)

DEFAULT_OUTPUT = REPO / "bench" / "results" / "consumer_drain.json"
BATCH = 1000

console = Console() if sys.stdout.isatty() else Console(width=150)


def _load(client: Any, leads: int, touchpoints: int, seed: int) -> int:
    """Seed the sales team and campaigns, then send the bulk leads and touchpoints; the
    number of people captured."""
    seed_team(client)
    keys = [k for k, _, _ in CAMPAIGNS]
    factory = LeadFactory(seed, campaigns=keys, identify=0.0, merge=0.0)
    emails: list[str] = []
    for start in range(0, leads, BATCH):
        batch = [factory.next()[1] for _ in range(min(BATCH, leads - start))]
        answer = post_json(client, "/leads/bulk", {"leads": batch}, 200)
        results = zip(batch, answer["results"], strict=True)
        emails += [body["email"] for body, item in results if item["status"] == 201]
        for body in batch:
            factory.confirm(body)
    rng = random.Random(seed)
    for start in range(0, touchpoints, BATCH):
        count = min(BATCH, touchpoints - start)
        items = [touchpoint(rng, keys, email=rng.choice(emails)) for _ in range(count)]
        post_json(client, "/touchpoints/bulk", {"touchpoints": items}, 200)
    return len(emails)


def one_run(options: argparse.Namespace, run: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from revhub.core.events.models import OutboxEvent
    from revhub.worker import build_worker

    with in_process_hub(
        options.backend, postgres_url=options.postgres, redis_url=options.redis_url
    ) as (settings, db, client):
        with client:
            people = _load(client, options.leads, options.touchpoints, options.seed + run)
        with db.reading() as session:
            events = session.scalar(select(func.count()).select_from(OutboxEvent)) or 0
        worker = build_worker(settings, db)
        result: dict[str, Any] = {"run": run, "people": people, "events": events}
        if options.backend == "postgres":
            started = time.process_time()
            worker.bus.ensure_groups(worker.registry.active())  # type: ignore[attr-defined]
            while worker.bus.relay():
                pass
            result["relay_cpu_s"] = round(time.process_time() - started, 3)
        result["consumers"] = {}
        for consumer in worker.registry.active():
            policy = settings.policy_for(consumer.name)
            handled, started = 0, time.process_time()
            while polled := worker.bus.poll(consumer, policy=policy, worker_id="bench"):
                handled += polled
            cpu = time.process_time() - started
            result["consumers"][consumer.name] = {"events": handled, "cpu_s": round(cpu, 3)}
            console.print(
                f"[dim]run {run}: {consumer.name} {handled} events, {cpu:.2f} s CPU[/dim]"
            )
        result["total_cpu_s"] = round(sum(c["cpu_s"] for c in result["consumers"].values()), 3)
        return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(runs[0]["consumers"])
    medians = {
        name: statistics.median(r["consumers"][name]["cpu_s"] for r in runs) for name in names
    }
    return {
        "cpu_s": medians,
        "total_cpu_s": statistics.median(r["total_cpu_s"] for r in runs),
        "events": statistics.median(r["events"] for r in runs),
    }


def show(runs: list[dict[str, Any]], median: dict[str, Any], options: argparse.Namespace) -> None:
    table = Table(
        title=f"Consumer drain on {options.backend}: {options.leads} bulk leads, "
        f"{options.touchpoints} bulk touchpoints, {len(runs)} runs (CPU s of this process)"
    )
    table.add_column("consumer")
    for r in runs:
        table.add_column(f"run {r['run']}", justify="right")
    table.add_column("median", justify="right")
    table.add_column("events/CPU s", justify="right")
    for name, cpu in median["cpu_s"].items():
        handled = runs[0]["consumers"][name]["events"]
        rate = f"{handled / cpu:,.0f}" if cpu else "-"
        cells = [f"{r['consumers'][name]['cpu_s']:.2f}" for r in runs]
        table.add_row(name, *cells, f"{cpu:.2f}", rate)
    totals = [f"{r['total_cpu_s']:.2f}" for r in runs]
    table.add_row("[bold]all[/bold]", *totals, f"[bold]{median['total_cpu_s']:.2f}[/bold]", "")
    console.print(table)
    console.print(f"events in the outbox (median): {median['events']:,.0f}")
    relays = [r["relay_cpu_s"] for r in runs if "relay_cpu_s" in r]
    if relays:
        console.print(f"Redis relay (median): {statistics.median(relays):.2f} s CPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--leads", type=int, default=3000, help="bulk leads to send (3000)")
    add("--touchpoints", type=int, default=10_000, help="bulk touchpoints to send (10000)")
    add_in_process_options(parser, default_output=DEFAULT_OUTPUT)
    options = parser.parse_args(argv)
    if min(options.leads, options.touchpoints, options.runs) <= 0:
        parser.error("--leads, --touchpoints and --runs must be positive")
    started = datetime.now(UTC)
    runs = [one_run(options, run) for run in range(1, options.runs + 1)]
    median = summary(runs)
    show(runs, median, options)
    report = {
        "benchmark": "consumer_drain",
        "options": {k: str(v) for k, v in vars(options).items()},
        "environment": environment(started, [options.backend], options.postgres),
        "runs": runs,
        "median": median,
    }
    write_json(report, options.output)
    console.print(f"JSON written to {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
