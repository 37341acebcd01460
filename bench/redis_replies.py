"""CPU the hub spends on Redis replies: a rate-limit draw (``core.ratelimit.RedisLimiter``,
one per request on the Redis limiter) and a read of 50 stream entries (what the relay and
the consumers do on the Redis bus), in microseconds of this process's CPU per call.

The draw is measured three ways: called directly (``take``, blocking); from an event loop
the way a request draws (``draw``: redis-py's asyncio client, 16 draws in flight); and from
an event loop through a thread, the way requests drew before (``run_in_threadpool(take)``).
On 2026-12-08, a slow hour (CI running beside it), twice each: from the loop 247 and
261 µs, through a thread 637 and 608 µs.

It says whether redis-py parses replies with hiredis (``redis[hiredis]`` in pyproject) or
in Python. To compare, run it, ``pip uninstall hiredis``, run it again, reinstall. On
2026-12-07, twice each, alternating: a draw took 133 and 134 µs without hiredis, 98 and
99 µs with it; a read of 50 entries 542 and 619 µs without, 117 and 141 µs with it.

    python bench/redis_replies.py [--redis-url redis://127.0.0.1:6379/12]

It prints the figures and writes ``bench/results/redis_replies.json`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import redis
from redis.utils import HIREDIS_AVAILABLE
from starlette.concurrency import run_in_threadpool

from common import DEFAULT_REDIS_URL, REPO, write_json
from revhub.core.ratelimit import RedisLimiter
from revhub.core.settings import RateLimit

DEFAULT_OUTPUT = REPO / "bench" / "results" / "redis_replies.json"
ENTRY = {"event": "x" * 600, "type": "lead.captured"}
"""About the size of a lead's event on the bus."""


def cpu_us(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of this process's CPU per call, after a warm-up."""
    for _ in range(calls // 10):
        call()
    per_call = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            call()
        per_call.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(per_call)


def loop_cpu_us(
    call: Callable[[], Awaitable[object]], calls: int, repeats: int, in_flight: int = 16
) -> float:
    """:func:`cpu_us` for a call awaited on an event loop, ``in_flight`` at a time (requests
    arrive together): this process's CPU, loop and threads, per call."""

    async def measure() -> float:
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                await call()

        await asyncio.gather(*(one() for _ in range(calls // 10)))
        per_call = []
        for _ in range(repeats):
            started = time.process_time()
            await asyncio.gather(*(one() for _ in range(calls)))
            per_call.append((time.process_time() - started) / calls * 1e6)
        return statistics.median(per_call)

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args()
    prefix = f"bench-replies-{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(options.redis_url)
    limiter = RedisLimiter(options.redis_url, prefix=prefix)
    limit = RateLimit(rate=1_000_000, burst=1_000_000)
    stream = f"{prefix}stream"
    client.xadd(stream, ENTRY)
    try:
        for _ in range(49):
            client.xadd(stream, ENTRY)
        figures = {
            "rate_limit_draw_us": cpu_us(
                lambda: limiter.take("bench", limit), options.calls, options.repeats
            ),
            "rate_limit_draw_from_loop_us": loop_cpu_us(
                lambda: limiter.draw("bench", limit), options.calls, options.repeats
            ),
            "rate_limit_draw_through_thread_us": loop_cpu_us(
                lambda: run_in_threadpool(limiter.take, "bench", limit),
                options.calls,
                options.repeats,
            ),
            "read_50_entries_us": cpu_us(
                lambda: client.xrange(stream, count=50), options.calls, options.repeats
            ),
        }
    finally:
        client.delete(*client.keys(f"{prefix}*"))
    print(f"hiredis: {HIREDIS_AVAILABLE}")
    for name, value in figures.items():
        print(f"  {name}: {value:.1f} µs of CPU")
    report = {
        "benchmark": "redis_replies",
        "hiredis": HIREDIS_AVAILABLE,
        **{k: round(v, 1) for k, v in figures.items()},
        "finished": datetime.now(UTC).isoformat(),
    }
    write_json(report, options.output)
    print(f"JSON written to {options.output}")


if __name__ == "__main__":
    main()
