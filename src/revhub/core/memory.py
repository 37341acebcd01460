"""How a RevHub process collects garbage.

A request that captures a batch of leads makes tens of thousands of short-lived objects
(ORM rows, validated models, JSON), freed by reference counting; the cyclic collector only
has to find the few cycles among them. How often it looks decides two costs: its total
time, and how long each look stops the process (every request in flight waits for it).
With CPython's default first-generation threshold of 700 allocations and nothing frozen it
took about a third of a bulk capture's time. What was loaded at start-up (modules, the
app, mappers) is now frozen out of every later collection, and the threshold is chosen by
``bench/gc_pauses.py`` (the capture path in one process, SQLite, two runs each):

* The API process and the worker: 10,000. On bulk-sized batches (8 of 500 leads) it took
  141 to 157 ms in all against 139 to 160 ms at 50,000 (the threshold before), with
  pauses of at most 18 to 21 ms against 23 to 27; on batches of three leads its pauses
  average 4.6 to 4.8 ms against 36 to 39 ms. At 200 single leads a second for 60 s the
  API process at 50,000 stopped once, for 57 ms (``bench/lead_capture.py``).
* The lead-capture child (``sales.capture_process``), which answers single leads: CPython's
  700, pauses averaging 0.26 ms and at most 6 ms over 1,500 batches of three leads (100 ms
  in all, against 56 ms at 10,000 with pauses up to 14 ms). Left untuned, as it was before,
  it also ran full collections over everything loaded at start-up: up to 137 to 171 ms,
  and on PostgreSQL (400 batches of seven leads) up to 151 to 186 ms and 416 to 536 ms in
  all, against at most 4 to 7 ms and 150 to 181 ms frozen at 700.

``revhub_gc_pause_seconds`` times each collection of the process serving ``/metrics``.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import Histogram

from revhub.core.observability import REGISTRY

FIRST_GENERATION_THRESHOLD = 10_000
"""The API process and the worker: as little collector time on bulk batches as 50,000, and
pauses an eighth as long on small ones."""
SHORT_PAUSE_THRESHOLD = 700
"""The lead-capture child: CPython's default (up to 3.13), pauses of a fraction of a
millisecond."""

GC_PAUSES = Histogram(
    "revhub_gc_pause_seconds",
    "Time each cyclic garbage collection of this process took (its other threads wait for "
    "it), by the oldest generation collected.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)
_BY_GENERATION = {generation: GC_PAUSES.labels(str(generation)) for generation in (0, 1, 2)}
"""Made once here: the hook must not call ``labels()``, whose lock a scrape holds while it
allocates, so a collection starting there would wait on its own thread for ever."""

_started = [0.0]


def _timed(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook; collections do not nest, so a start is always followed by
    its own stop."""
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _BY_GENERATION[info["generation"]].observe(time.perf_counter() - _started[0])


def tune_garbage_collector(
    first_generation: int = FIRST_GENERATION_THRESHOLD, *, timed: bool = True
) -> None:
    """Call once a process has finished starting (the server's lifespan, the worker, the
    lead-capture child). ``timed``: observe each pause into ``revhub_gc_pause_seconds``
    (pointless where nothing serves ``/metrics``)."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(first_generation, second, third)
    gc.freeze()
    if timed and _timed not in gc.callbacks:
        gc.callbacks.append(_timed)
