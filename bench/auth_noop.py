"""Latency of an authenticated no-op request at a fixed offered load.

What it measures: the p50/p95/p99/max latency of ``GET /api/v1/auth/me`` with an
``X-API-Key`` header. The route does no domain work, so the figure is the kernel's fixed
cost per request: API key look-up and hash check, the rate-limit draw, the request
transaction, the metrics and JSON access-log middleware, and uvicorn/FastAPI themselves.

How: the script starts its own hub in a fresh temporary directory (``revhub migrate``,
``revhub keys create``, then ``revhub serve`` on a free port: one uvicorn process), waits
for ``/readyz``, offers ``--warmup`` seconds of unrecorded load, then ``--runs`` runs of
``--duration`` seconds each against the same server, and stops the server with SIGTERM.

The load is open loop: request *i* is scheduled at ``start + i / rate`` whatever the server
does. Latency is counted from that scheduled instant (so a stall also delays every request
queued behind it: no coordinated omission) and, for comparison, from the moment the request
headers went on the wire. At most ``--connections`` (32) requests are in flight, as in a
client's connection pool; later ones wait in the client, and their latency includes the
wait. Rate limits are lifted through ``REVHUB_RATE_LIMITS``; any non-200 answer (a 429
would mean they were not) or time-out makes the script exit 1.

Run::

    python bench/auth_noop.py [--rate 200 --duration 20 --runs 3]

It prints a table and writes JSON to ``bench/results/auth_noop.json``. The client (asyncio,
httpx) and the server run on the same machine and share its CPUs; the figures include that.

PostgreSQL / Redis: export ``REVHUB_DATABASE_URL`` and/or ``REVHUB_REDIS_URL`` (and any other
``REVHUB_*`` setting) and they are passed to the server. The script sets only
``REVHUB_DATA_DIR`` (a fresh temporary directory) and ``REVHUB_RATE_LIMITS``; the embedded
worker runs in the server as it does by default (``REVHUB_EMBEDDED_WORKER=false`` turns it off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from common import REPO, HubError, created_key, git

ENDPOINT = "/api/v1/auth/me"
KEY_NAME = "bench"
UNTHROTTLED = json.dumps({"default": {"rate": 100_000, "burst": 100_000}})
WIRE_EVENT = "http11.send_request_headers.started"  # httpcore trace: headers start going out
DEFAULT_OUTPUT = REPO / "bench" / "results" / "auth_noop.json"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
OTHER_CPU_WARN = 0.1  # CPUs used by other processes during a run before the table warns

console = Console() if sys.stdout.isatty() else Console(width=120)  # wide when piped


class BenchError(Exception):
    """The benchmark could not run (the server did not start, the key did not work...)."""


@dataclass(frozen=True)
class Options:
    rate: float
    duration: float
    warmup: float
    runs: int
    connections: int
    timeout: float
    output: Path


@dataclass(frozen=True)
class Server:
    base_url: str
    api_key: str
    pid: int


@dataclass(frozen=True)
class Sample:
    """One request: when it was due, when its headers went out, when it was answered."""

    scheduled: float
    sent: float
    done: float
    outcome: str  # the status code, or the name of the client-side exception


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class CpuUse:
    """CPUs busy during a run (1.0 = one CPU for the whole run), and who used them."""

    client: float
    server: float
    other: float  # any other process: if high, the run competed with something else


@dataclass(frozen=True)
class RunResult:
    run: int
    requests: int
    from_scheduled: Latency
    from_send: Latency
    send_lag: Latency  # sent - scheduled: the client's own delay, waiting at the gate included
    achieved_rps: float
    errors: dict[str, int]
    cpu: CpuUse | None


# --- the server -------------------------------------------------------------------------


def hub_env(data_dir: Path) -> dict[str, str]:
    """The caller's environment (REVHUB_DATABASE_URL etc. pass through) plus our two settings."""
    env = dict(os.environ)
    env.update(
        REVHUB_DATA_DIR=str(data_dir),
        REVHUB_RATE_LIMITS=UNTHROTTLED,
        COLUMNS="300",  # rich must not wrap the line holding the key
        NO_COLOR="1",
    )
    return env


def revhub(*args: str, env: dict[str, str], cwd: Path) -> str:
    """Run a ``revhub`` command to completion and return its standard output."""
    command = [sys.executable, "-m", "revhub", *args]
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"`revhub {' '.join(args)}` exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Poll ``/readyz`` until it answers 200; fail if the server exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the server exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchError(f"/readyz not ready after {READY_TIMEOUT_S:g} s:\n{log_tail(log_path)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        console.print("[yellow]The server ignored SIGTERM; killing it.[/yellow]")
        proc.kill()
        proc.wait()


@contextmanager
def running_server(workdir: Path) -> Iterator[Server]:
    """Migrate, create a key and serve from ``workdir``; the server's logs go to a file there."""
    env = hub_env(workdir / "data")
    revhub("migrate", env=env, cwd=workdir)
    api_key = created_key(workdir, env, KEY_NAME, "admin")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "revhub", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=log)
        try:
            wait_ready(proc, base_url, log_path)
            yield Server(base_url, api_key, proc.pid)
        finally:
            stop(proc)


# --- the load ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """The client: an httpx pool, and a gate letting at most ``connections`` requests in flight.

    Requests beyond that wait at the gate (FIFO, counted in their latency) rather than in
    httpcore's pool, which rescans every queued request on each event and so turns quadratic,
    burning the client's CPU, once thousands queue behind a server stall.
    """

    client: httpx.AsyncClient
    gate: asyncio.Semaphore
    timeout: float  # seconds from the scheduled send; later is an error ("Timeout")

    async def one(self, scheduled: float) -> Sample:
        """Send one request, noting when its headers actually started going out."""
        wire: list[float] = []

        async def trace(event: str, _info: dict[str, Any]) -> None:
            if event == WIRE_EVENT:
                wire.append(time.perf_counter())

        try:
            async with asyncio.timeout(scheduled + self.timeout - time.perf_counter()), self.gate:
                response = await self.client.get(ENDPOINT, extensions={"trace": trace})
            outcome = str(response.status_code)
        except TimeoutError:
            outcome = "Timeout"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        done = time.perf_counter()
        return Sample(scheduled, wire[-1] if wire else done, done, outcome)

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


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq = Path("/proc/stat").read_text().split()[1:8]
    return sum(int(v) for v in (user, nice, system, irq, softirq)) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_counters(server_pid: int) -> tuple[float, float, float] | None:
    """(machine busy, this client, the server) in CPU seconds; None off Linux."""
    try:
        return _machine_busy_s(), time.process_time(), _process_cpu_s(server_pid)
    except (OSError, ValueError, IndexError):
        return None


def cpu_use(
    before: tuple[float, float, float] | None, after: tuple[float, float, float] | None, wall: float
) -> CpuUse | None:
    if before is None or after is None:
        return None
    machine, client, server = (round((a - b) / wall, 2) for a, b in zip(after, before, strict=True))
    return CpuUse(client, server, round(max(0.0, machine - client - server), 2))


def latency(seconds: list[float]) -> Latency:
    """Percentiles (linear interpolation, as numpy's default) in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return Latency(*(round(v, 3) for v in (cuts[49], cuts[94], cuts[98], max(ms))))


def summarize(run: int, samples: list[Sample], cpu: CpuUse | None) -> RunResult:
    ok = [s for s in samples if s.outcome == "200"]
    if len(ok) < 2:
        outcomes = dict(Counter(s.outcome for s in samples))
        raise BenchError(
            f"run {run}: {len(ok)} of {len(samples)} requests answered 200: {outcomes}"
        )
    window = max(s.done for s in ok) - min(s.scheduled for s in samples)
    return RunResult(
        run=run,
        requests=len(samples),
        from_scheduled=latency([s.done - s.scheduled for s in ok]),
        from_send=latency([s.done - s.sent for s in ok]),
        send_lag=latency([max(0.0, s.sent - s.scheduled) for s in ok]),
        achieved_rps=round(len(ok) / window, 2),
        errors=dict(Counter(s.outcome for s in samples if s.outcome != "200")),
        cpu=cpu,
    )


async def check_credential(client: httpx.AsyncClient) -> None:
    response = await client.get(ENDPOINT)
    if response.status_code != 200 or response.json().get("name") != KEY_NAME:
        raise BenchError(f"{ENDPOINT} answered {response.status_code}: {response.text}")


async def measure(server: Server, options: Options) -> list[RunResult]:
    n = options.connections
    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"X-API-Key": server.api_key},
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        timeout=options.timeout,
    ) as client:
        await check_credential(client)
        load = Load(client, asyncio.Semaphore(n), options.timeout)
        if options.warmup > 0:
            console.print(f"[dim]warm-up: {options.warmup:g} s at {options.rate:g} req/s[/dim]")
            await load.offer(options.rate, options.warmup)
        results = []
        for run in range(1, options.runs + 1):
            console.print(f"[dim]run {run}/{options.runs}: {options.duration:g} s[/dim]")
            before, wall = cpu_counters(server.pid), time.perf_counter()
            samples = await load.offer(options.rate, options.duration)
            cpu = cpu_use(before, cpu_counters(server.pid), time.perf_counter() - wall)
            results.append(summarize(run, samples, cpu))
    return results


# --- the report -------------------------------------------------------------------------


def database_kind(url: str | None) -> str:
    if not url:
        return "sqlite"
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return "postgresql" if scheme == "postgres" else scheme


def environment(started: datetime) -> dict[str, Any]:
    cpus = os.cpu_count()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": cpus,
        "database": database_kind(os.environ.get("REVHUB_DATABASE_URL")),
        "rate_limiter": "redis" if os.environ.get("REVHUB_REDIS_URL") else "memory",
        "revhub_env": sorted(n for n in os.environ if n.startswith("REVHUB_")),  # names only
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": None if dirty is None else bool(dirty),
        "timestamp_utc": started.isoformat(timespec="seconds"),
        "note": f"client (asyncio + httpx, 1 process) and server (uvicorn, 1 process) "
        f"share the same {cpus} CPUs",
    }


def medians(results: list[RunResult], basis: str) -> dict[str, float]:
    per_run = [asdict(getattr(r, basis)) for r in results]
    return {k: round(statistics.median(d[k] for d in per_run), 3) for k in per_run[0]}


def run_json(result: RunResult) -> dict[str, Any]:
    return {
        "run": result.run,
        "requests": result.requests,
        **asdict(result.from_scheduled),
        "achieved_rps": result.achieved_rps,
        "errors": sum(result.errors.values()),
        "error_kinds": result.errors,
        "from_send": asdict(result.from_send),
        "send_lag": asdict(result.send_lag),
        "cpu": asdict(result.cpu) if result.cpu else None,
    }


def build_report(options: Options, results: list[RunResult], started: datetime) -> dict[str, Any]:
    return {
        "benchmark": "auth_noop",
        "endpoint": f"GET {ENDPOINT}",
        "latency_basis": "top-level figures from the scheduled send time (open loop); "
        "from_send: from the moment the request headers went on the wire",
        "rate": options.rate,
        "duration": options.duration,
        "warmup": options.warmup,
        "runs": options.runs,
        "connections": options.connections,
        "timeout": options.timeout,
        "per_run": [run_json(r) for r in results],
        "median": {
            **medians(results, "from_scheduled"),
            "from_send": medians(results, "from_send"),
        },
        **environment(started),
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def _cells(lat: dict[str, Any], send: dict[str, Any], with_max: bool) -> list[str]:
    cells = [f"{lat[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")]
    cells.append(f"{lat['max_ms']:.2f}" if with_max else "")
    return cells + [f"{send[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")]


def print_table(report: dict[str, Any]) -> None:
    table = Table(
        title=f"{report['endpoint']}: {report['rate']:g} req/s offered, "
        f"{report['runs']} runs of {report['duration']:g} s ({report['database']})",
        caption="ms from the scheduled send (open loop); 'sent' = from the wire send; "
        f"CPU c/s/o = CPUs busy in the client/server/other processes. {report['note']}.",
    )
    for name in ("run", "p50", "p95", "p99", "max", "sent p50", "sent p95", "sent p99"):
        table.add_column(name, justify="right")
    table.add_column("req/s", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("CPU c/s/o", justify="right")
    for r in report["per_run"]:
        cells = _cells(r, r["from_send"], with_max=True)
        cpu = "/".join(f"{v:.2f}" for v in r["cpu"].values()) if r["cpu"] else "-"
        table.add_row(str(r["run"]), *cells, f"{r['achieved_rps']:.1f}", str(r["errors"]), cpu)
    m = report["median"]
    table.add_row("median", *_cells(m, m["from_send"], with_max=False), "", "", "", style="bold")
    console.print(table)
    busy = [r["run"] for r in report["per_run"] if r["cpu"] and r["cpu"]["other"] > OTHER_CPU_WARN]
    if busy:
        console.print(
            f"[yellow]Other processes (PostgreSQL and Redis among them, if used) kept more than "
            f"{OTHER_CPU_WARN:g} CPU busy during run(s) {busy}; on SQLite that is contention "
            "from outside the benchmark: rerun on a quiet machine.[/yellow]"
        )


def check_errors(report: dict[str, Any]) -> int:
    """Exit status: 1, loudly, if any request was not answered 200."""
    errors: Counter[str] = Counter()
    for r in report["per_run"]:
        errors.update(r["error_kinds"])
    if not errors:
        return 0
    hint = " (429: the rate limits were not lifted)" if "429" in errors else ""
    console.print(f"[bold red]FAILED: {sum(errors.values())} non-200 answers {dict(errors)}{hint}")
    return 1


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s offered (200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds (3)")
    parser.add_argument("--runs", type=int, default=3, help="recorded runs (3)")
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="most requests in flight (32); later ones wait in the client",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, s (10)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file")
    args = parser.parse_args(argv)
    if min(args.rate, args.duration, args.runs, args.connections, args.timeout) <= 0:
        parser.error("--rate, --duration, --runs, --connections, --timeout must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return Options(
        args.rate,
        args.duration,
        args.warmup,
        args.runs,
        args.connections,
        args.timeout,
        args.output,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="revhub-bench-") as tmp,
            running_server(Path(tmp)) as server,
        ):
            console.print(f"[dim]hub up at {server.base_url} (data in {tmp})[/dim]")
            results = asyncio.run(measure(server, options))
    except (BenchError, HubError) as exc:
        console.print(f"[bold red]Benchmark failed:[/bold red] {exc}")
        return 2
    report = build_report(options, results, started)
    write_json(report, options.output)
    print_table(report)
    console.print(f"JSON written to {options.output}")
    return check_errors(report)


if __name__ == "__main__":
    sys.exit(main())
