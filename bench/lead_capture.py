"""Latency of single-lead capture (the whole six-step pipeline) at a fixed offered load.

What it measures: p50/p95/p99/max latency, achieved rate and errors of
``POST /api/v1/integrations/sales/leads``, each request running seed 002's six steps
(validation, deduplication/merge, scoring, CRM hand-off event, territory assignment,
follow-up) in one transaction. Target (issue): p95 under 50 ms at 200 leads/s.

How: for each backend and each of ``--runs`` runs, a fresh hub is started as a user runs it
(``common.sales_hub``):

* ``sqlite``: embedded mode in a temporary data directory, ``revhub serve`` with its
  embedded worker (a child process) draining the events the captures publish;
* ``postgres``: production mode on the database ``bench`` (its schema dropped and recreated
  each run), the Redis bus, ``revhub serve`` and a separate ``revhub worker``.

It is seeded through the API (5 territories with 14 reps, 6 campaigns, anonymous visitors
with web sessions), then offered ``--warmup`` seconds of unrecorded load and ``--duration``
seconds of recorded load, open loop: lead *i* is due at ``start + i / rate`` whatever the
server does, and latency counts from that instant (no coordinated omission). At most
``--connections`` requests are in flight (a client's pool); later ones wait in the client
and their latency includes the wait.

The leads are varied (``common.LeadFactory``): mostly new people at ~2,000 companies, some
on free mailboxes or typed sloppily; ~10% send again a lead already answered (same e-mail:
the "updated" path), ~2% of those with a seeded anonymous visitor id (two profiles merge);
~15% of new leads carry a seeded visitor id (an anonymous visitor identified), ~10% a fresh
one; most carry phone, country, industry, job title, consent and a campaign. The answers'
deduplication outcomes and assignments are counted, to show which paths ran.

Run from the repository root::

    python bench/lead_capture.py [--rate 200 --duration 60 --runs 3 --backend sqlite]

It prints a table per backend and a summary, and writes ``bench/results/lead_capture.json``
(gitignored). Any answer other than 201 makes it exit 1. ``--py-spy DIR`` records the
server (and worker) with py-spy during the first recorded run of each backend (slows the
server slightly: use it to find hotspots, not for the figures). The client, the hub, its
worker, PostgreSQL and Redis share the machine's CPUs; the ``CPU`` column says who used them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
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
    ms_cell,
    percentiles_ms,
    py_spy,
    sales_hub,
    seed_sales,
    wait_quiet,
    write_json,
)

ENDPOINT = f"{SALES}/leads"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "lead_capture.json"
P95_TARGET_MS = 50.0
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms")

console = Console() if sys.stdout.isatty() else Console(width=150)


@dataclass(frozen=True)
class Options:
    rate: float
    duration: float
    warmup: float
    runs: int
    connections: int
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


@dataclass(frozen=True)
class Sample:
    scheduled: float
    sent: float
    done: float
    outcome: str  # the status code, or the client-side exception's name
    kind: str  # what the body was meant to exercise: new, repeat, merge
    dedup: str | None = None  # the answer's deduplication outcome
    queued: bool | None = None  # the answer's assignment went to the fallback queue


class Wire:
    """The load's HTTP/1.1 client: keep-alive connections (at most ``--connections``, each
    carrying one request at a time), each request written whole and its answer read by
    ``Content-Length``.

    The client shares the machine's two CPUs with the hub. httpx's async client used about
    2 ms of CPU a request (0.4 to 0.8 of a CPU at 200/s), and when the client fell behind
    its own sending schedule the latencies measured its lag, not the hub. This one does
    the same exchange for a fraction of that; the ``client`` CPU column shows what it
    took."""

    def __init__(self, base_url: str, api_key: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.head = (
            f"POST {ENDPOINT} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"X-API-Key: {api_key}\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()

    async def post(self, body: bytes, sent: list[float]) -> tuple[int, bytes]:
        """Send ``body``; append to ``sent`` when it went out; the status and the answer.
        A kept connection the hub has since closed (its keep-alive timeout) answers
        nothing: the request goes again on a new one."""
        while self.idle:
            answer = await self._exchange(*self.idle.pop(), body, sent)
            if answer is not None:
                return answer
        answer = await self._exchange(
            *await asyncio.open_connection(self.host, self.port), body, sent
        )
        if answer is None:
            raise ConnectionResetError("the hub closed a new connection without answering")
        return answer

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: bytes,
        sent: list[float],
    ) -> tuple[int, bytes] | None:
        try:
            writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
            sent.append(time.perf_counter())
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                writer.close()
                return None
            status, length, close = int(status_line.split()[1]), 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            answer = await reader.readexactly(length)
        except ConnectionResetError:
            writer.close()
            return None
        except BaseException:  # a timeout: this connection is not reused
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


@dataclass
class Load:
    client: Wire
    gate: asyncio.Semaphore
    timeout: float
    factory: LeadFactory
    error_examples: list[str] = field(default_factory=list)

    async def one(self, scheduled: float) -> Sample:
        kind, body = self.factory.next()
        wire: list[float] = []
        dedup, queued = None, None
        try:
            async with asyncio.timeout(scheduled + self.timeout - time.perf_counter()), self.gate:
                status, answer = await self.client.post(orjson.dumps(body), wire)
            outcome = str(status)
            if status == 201:
                self.factory.confirm(body)
                steps = orjson.loads(answer)["steps"]
                dedup, queued = steps["deduplication"]["outcome"], steps["assignment"]["queued"]
            elif len(self.error_examples) < 5:
                self.error_examples.append(f"{kind} {outcome}: {answer[:300]!r}")
        except TimeoutError:
            outcome = "Timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            outcome = type(exc).__name__
        done = time.perf_counter()
        return Sample(scheduled, wire[-1] if wire else done, done, outcome, kind, dedup, queued)

    async def offer(self, rate: float, seconds: float) -> list[Sample]:
        """Open loop: start request i at ``start + i / rate``, never waiting for answers."""
        interval = 1.0 / rate
        start = time.perf_counter() + 0.01
        tasks: list[asyncio.Task[Sample]] = []
        for i in range(round(rate * seconds)):
            scheduled = start + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(scheduled)))
        return list(await asyncio.gather(*tasks))


def summarize(run: int, samples: list[Sample], cpu: dict[str, float] | None) -> dict[str, Any]:
    ok = [s for s in samples if s.outcome == "201"]
    # No success at all (an overloaded hub answers nothing in time) is a result, not a crash.
    window = max(s.done for s in samples) - min(s.scheduled for s in samples)
    errors = dict(Counter(s.outcome for s in samples if s.outcome != "201"))
    return {
        "run": run,
        "requests": len(samples),
        **percentiles_ms([s.done - s.scheduled for s in ok]),
        "achieved_rps": round(len(ok) / window, 2) if window > 0 else 0.0,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "from_send": percentiles_ms([s.done - s.sent for s in ok]),
        "send_lag": percentiles_ms([max(0.0, s.sent - s.scheduled) for s in ok]),
        "sent_as": dict(Counter(s.kind for s in samples)),
        "deduplication": dict(Counter(s.dedup for s in ok)),
        "queued": sum(bool(s.queued) for s in ok),
        "cpu": cpu,
    }


async def measure(hub: SalesHub, factory: LeadFactory, options: Options, run: int) -> dict:
    client = Wire(hub.base_url, hub.api_key)
    try:
        load = Load(client, asyncio.Semaphore(options.connections), options.timeout, factory)
        if options.warmup > 0:
            await load.offer(options.rate, options.warmup)
        meter = CpuMeter(hub)
        spy_dir = options.py_spy if run == 1 else None
        pids = {"server": hub.server_pid, "worker": hub.worker_pid}
        one_process = options.api_processes == 1  # (else two scrapes may reach two processes)
        before = await asyncio.to_thread(hub.scrape) if one_process else None
        with py_spy(pids, spy_dir, f"lead_capture-{hub.backend}"):
            meter.start()
            samples = await load.offer(options.rate, options.duration)
            cpu = meter.stop()
        result = summarize(run, samples, cpu)
        if before is not None:
            after = await asyncio.to_thread(hub.scrape)
            result["batches"] = capture_batches(before, after)
            result["gc_pauses"] = gc_pauses(before, after)
        result["error_examples"] = load.error_examples
        return result
    finally:
        client.close()


BATCH_SIZE = "revhub_lead_capture_batch_size"
BATCH_SECONDS = "revhub_lead_capture_batch_seconds"
GC_PAUSES = "revhub_gc_pause_seconds"


def capture_batches(before: dict, after: dict) -> dict[str, float | None]:
    """The capture queue's batches during the window (from the server's histograms): how
    many, their mean size and mean time, and the bucket bound under which 95% of them
    finished. A lead waits for the batch in hand and then its own, so its latency is up
    to about twice a batch's time plus the HTTP exchange."""

    count = _delta(before, after, BATCH_SECONDS, "count")
    if count <= 0:
        return {"count": 0, "mean_size": None, "mean_ms": None, "p95_bound_ms": None}
    sized = _delta(before, after, BATCH_SIZE, "count")  # (a failed batch is timed, not sized)
    size_sum = _delta(before, after, BATCH_SIZE, "sum")
    return {
        "count": int(count),
        "mean_size": round(size_sum / sized, 2) if sized else None,
        "mean_ms": round(1000 * _delta(before, after, BATCH_SECONDS, "sum") / count, 2),
        "p95_bound_ms": _bound_ms(before, after, BATCH_SECONDS, 0.95),
    }


def gc_pauses(before: dict, after: dict) -> dict[str, float | None]:
    """The API process's garbage-collector pauses during the window: how many, their total
    time, and the bucket bound under which all of them ended (None throughout: the hub
    has no such metric, e.g. code from before it)."""
    names = [n for n in after if n.startswith(f"{GC_PAUSES}{{")]
    if not names:
        return {"count": None, "total_ms": None, "max_bound_ms": None}
    count = sum(_delta(before, after, n, "count") for n in names)
    total = sum(_delta(before, after, n, "sum") for n in names)
    bounds = [_bound_ms(before, after, n, 1.0) for n in names]
    return {
        "count": int(count),
        "total_ms": round(1000 * total, 1),
        "max_bound_ms": max((b for b in bounds if b is not None), default=None),
    }


def _bound_ms(before: dict, after: dict, name: str, share: float) -> float | None:
    """The smallest bucket bound under which ``share`` of the window's observations of
    histogram ``name`` fell: None if there were none, ``inf`` if only the open bucket
    holds them."""

    count = _delta(before, after, name, "count")
    if count <= 0:
        return None
    bounds = sorted((float(part[3:]), part) for part in after.get(name, {}) if part[:3] == "le=")
    within = (b for b, part in bounds if _delta(before, after, name, part) >= share * count)
    return 1000 * next(within, math.inf)


def _delta(before: dict, after: dict, name: str, part: str) -> float:
    """How much ``part`` (count, sum or a bucket) of histogram ``name`` grew in the window."""
    return after.get(name, {}).get(part, 0.0) - before.get(name, {}).get(part, 0.0)


def visitors_needed(options: Options) -> int:
    """Anonymous visitors the factory may name: new leads identify 15%, merges take 2%."""
    leads = options.rate * (options.warmup + options.duration)
    return math.ceil(leads * (0.9 * 0.15 + 0.02) * 1.25) + 50


def run_backend(backend: str, options: Options) -> list[dict[str, Any]]:
    results = []
    for run in range(1, options.runs + 1):
        idle = wait_quiet(options.quiet_wait) if options.quiet_wait > 0 else None
        with sales_hub(
            backend,
            postgres_url=options.postgres_url,
            redis_url=options.redis_url,
            src=options.src,
            api_processes=options.api_processes,
        ) as hub:
            seeded = seed_sales(hub, visitors=visitors_needed(options), seed=options.seed + run)
            console.print(
                f"[dim]{backend} run {run}/{options.runs}: hub at {hub.base_url}, seeded in "
                f"{seeded.seconds:g} s; {options.warmup:g} s warm-up + {options.duration:g} s "
                f"at {options.rate:g} leads/s[/dim]"
            )
            factory = LeadFactory(
                options.seed + run, campaigns=seeded.campaigns, visitors=seeded.visitors
            )
            result = asyncio.run(measure(hub, factory, options, run))
        result["busy_before"] = idle
        results.append(result)
        console.print(
            f"[dim]  p50 {ms_cell(result['p50_ms'])} ms, p95 {ms_cell(result['p95_ms'])} ms, "
            f"p99 {ms_cell(result['p99_ms'])} ms, {result['achieved_rps']:.1f} leads/s, "
            f"{result['errors']} errors[/dim]"
        )
        if options.api_processes == 1:
            console.print(f"[dim]  {_from_metrics(result)}[/dim]")
    return results


def _from_metrics(result: dict[str, Any]) -> str:
    b, g = result["batches"], result["gc_pauses"]

    def within(bound: float | None) -> str:
        return "n/a" if bound is None else "over 250 ms" if math.isinf(bound) else f"{bound:g} ms"

    pauses = "no GC metric"
    if g["count"] is not None:
        longest = within(g["max_bound_ms"])
        pauses = f"{g['count']} pauses, {g['total_ms']} ms in all, each within {longest}"
    return (
        f"{b['count']} capture batches, mean {b['mean_size']} leads, mean {b['mean_ms']} ms, "
        f"95% within {within(b['p95_bound_ms'])}; API process GC: {pauses}"
    )


def backend_report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = median_of(runs, (*LATENCY_KEYS[:3], "achieved_rps"))
    return {
        "per_run": runs,
        "median": med | {"errors": sum(r["errors"] for r in runs)},
        "meets_target": med["p95_ms"] is not None and med["p95_ms"] < P95_TARGET_MS,
    }


def build_report(options: Options, results: dict[str, list], started: datetime) -> dict:
    return {
        "benchmark": "lead_capture",
        "endpoint": f"POST {ENDPOINT}",
        "latency_basis": "top-level figures from the scheduled send time (open loop); "
        "from_send: from the moment the request headers went on the wire",
        "target": f"p95 < {P95_TARGET_MS:g} ms",
        "rate": options.rate,
        "duration": options.duration,
        "warmup": options.warmup,
        "runs": options.runs,
        "connections": options.connections,
        "seed": options.seed,
        "api_processes": options.api_processes,
        "backends": {b: backend_report(r) for b, r in results.items()},
        **environment(started, tuple(results), options.postgres_url, options.src),
        "note": f"client (asyncio, HTTP/1.1 keep-alive, 1 process), "
        f"hub (uvicorn, {options.api_processes} process(es); on PostgreSQL "
        f"also a worker process), PostgreSQL and Redis share the same {os.cpu_count()} CPUs",
    }


def _cpu_cell(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "-"
    return "/".join(f"{cpu[k]:.2f}" for k in ("client", "server", "worker", "pg_redis", "other"))


def _busy(cpu: dict[str, float] | None) -> bool:
    return bool(cpu) and cpu["other"] > OTHER_CPU_WARN  # type: ignore[index]


def _warn_busy(backend: str, runs: list[int]) -> None:
    if runs:
        console.print(
            f"[yellow]{backend}: other processes kept more than {OTHER_CPU_WARN:g} CPU busy "
            f"during run(s) {runs}: the hub competed with work outside the benchmark; "
            "rerun on a quiet machine.[/yellow]"
        )


def print_tables(report: dict[str, Any]) -> None:
    for backend, data in report["backends"].items():
        table = Table(
            title=f"{report['endpoint']} on {backend}: {report['rate']:g} leads/s offered, "
            f"{report['runs']} runs of {report['duration']:g} s",
            caption="ms from the scheduled send (open loop); 'sent' = from the wire send; "
            "CPU c/s/w/db/o = CPUs busy in client/server/worker/PostgreSQL+Redis/other; "
            "dedup = created/updated/identified/merged answers",
        )
        for name in ("run", "p50", "p95", "p99", "max", "sent p95", "leads/s", "errors"):
            table.add_column(name, justify="right")
        table.add_column("dedup c/u/i/m", justify="right")
        table.add_column("queued", justify="right")
        table.add_column("CPU c/s/w/db/o", justify="right")
        for r in data["per_run"]:
            d = r["deduplication"]
            dedup = "/".join(
                str(d.get(k, 0)) for k in ("created", "updated", "identified", "merged")
            )
            table.add_row(
                str(r["run"]),
                *(ms_cell(r[k]) for k in LATENCY_KEYS),
                ms_cell(r["from_send"]["p95_ms"]),
                f"{r['achieved_rps']:.1f}",
                str(r["errors"]),
                dedup,
                str(r["queued"]),
                _cpu_cell(r["cpu"]),
            )
        m = data["median"]
        table.add_row(
            "median", *(ms_cell(m[k]) for k in LATENCY_KEYS[:3]), "", "",
            f"{m['achieved_rps']:.1f}", "", "", "", "", style="bold",
        )  # fmt: skip
        console.print(table)
        for r in data["per_run"]:
            for example in r.get("error_examples", []):
                console.print(f"[red]run {r['run']}: {example}[/red]")
        _warn_busy(backend, [r["run"] for r in data["per_run"] if _busy(r["cpu"])])
    summary = Table(
        title=f"Lead capture, medians of {report['runs']} runs (target {report['target']})"
    )
    for name in (
        "backend",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "leads/s",
        "errors, all runs",
        "p95 target",
    ):
        summary.add_column(name, justify="right")
    for backend, data in report["backends"].items():
        m = data["median"]
        summary.add_row(
            backend, ms_cell(m["p50_ms"]), ms_cell(m["p95_ms"]), ms_cell(m["p99_ms"]),
            f"{m['achieved_rps']:.1f}", str(m["errors"]),
            "[green]met[/green]" if data["meets_target"] else "[red]missed[/red]",
        )  # fmt: skip
    console.print(summary)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--rate", type=float, default=200.0, help="leads/s offered (200)")
    add("--duration", type=float, default=60.0, help="recorded seconds per run (60)")
    add("--warmup", type=float, default=5.0, help="unrecorded seconds first, each run (5)")
    add("--runs", type=int, default=3, help="runs per backend, each on a fresh hub (3)")
    add("--connections", type=int, default=32, help="most requests in flight (32)")
    add("--timeout", type=float, default=10.0, help="per request, s from its schedule (10)")
    add_hub_options(parser, default_output=DEFAULT_OUTPUT)
    ns = parser.parse_args(argv)
    if min(ns.rate, ns.duration, ns.runs, ns.connections, ns.timeout) <= 0 or ns.warmup < 0:
        parser.error("--rate, --duration, --runs, --connections, --timeout must be positive")
    return Options(
        ns.rate, ns.duration, ns.warmup, ns.runs, ns.connections, ns.timeout,
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
    errors = sum(d["median"]["errors"] for d in report["backends"].values())
    if errors:
        console.print(f"[bold red]FAILED: {errors} answers other than 201[/bold red]")
        return 1
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
