"""How a RevHub process collects garbage.

A request that captures a batch of leads makes tens of thousands of short-lived objects
(ORM rows, validated models, JSON). With CPython's default first-generation threshold of 700
allocations the cyclic collector runs every few hundred microseconds of such work; measured
on ``bench/bulk_ingest.py``-sized batches it took about a third of the capture time. The
objects are freed by reference counting anyway, so collecting less often costs little
memory: the threshold below runs a collection every 50,000 net allocations, and what was
loaded at start-up (modules, the app, mappers) is frozen out of every later collection.
"""

from __future__ import annotations

import gc

FIRST_GENERATION_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Call once a process has finished starting (the server's lifespan, the worker)."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION_THRESHOLD, second, third)
    gc.freeze()
