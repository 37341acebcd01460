"""How a RevHub process collects garbage.

A request that captures a batch of leads makes tens of thousands of short-lived objects
(ORM rows, validated models, JSON). With CPython's default first-generation threshold of 700
allocations the cyclic collector runs every few hundred microseconds of such work; measured
on ``bench/bulk_ingest.py``-sized batches it took about a third of the capture time. The
objects are freed by reference counting anyway, so collecting less often costs little
memory: the API process and the worker run a collection every 50,000 net allocations.

The lead-capture child (``sales.capture_process``) answers single leads, so there a long
pause matters more than the total. On its path the mean first-generation pause grows much
faster than the threshold (``bench/gc_pauses.py``, SQLite, 1,500 batches of three leads,
start-up frozen): 0.3 ms at 700, 4 to 7 ms at 10,000, 54 to 66 ms at 50,000. So the child
keeps CPython's 700. Left untuned, as it was before, it also ran full collections over
everything loaded at start-up: on PostgreSQL, 400 batches of seven leads had pauses of up
to 168 ms and 490 ms of collection in all; frozen, at most 2 ms and 173 ms in all.

In every process what was loaded at start-up (modules, the app, mappers) is frozen out of
later collections, and ``revhub_gc_pause_seconds`` times each collection (on ``/metrics``
for the process that serves it).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

from revhub.core.observability import REGISTRY

FIRST_GENERATION_THRESHOLD = 50_000
"""The API process and the worker: least collector time on bulk batches."""
SHORT_PAUSE_THRESHOLD = 700
"""The lead-capture child: CPython's default, pauses well under a millisecond."""

GC_PAUSES = Histogram(
    "revhub_gc_pause_seconds",
    "Time this process stood still for the cyclic garbage collector, per collection, by "
    "the oldest generation collected.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)

_started = [0.0]


def _timed(phase: str, info: dict[str, Any]) -> None:
    """A ``gc.callbacks`` hook: collections run one at a time, holding the interpreter, so a
    start is always followed by its own stop."""
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - _started[0])


def tune_garbage_collector(first_generation: int = FIRST_GENERATION_THRESHOLD) -> None:
    """Call once a process has finished starting (the server's lifespan, the worker, the
    lead-capture child with :data:`SHORT_PAUSE_THRESHOLD`)."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(first_generation, second, third)
    gc.freeze()
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)
