"""How a RevHub process shares the interpreter between its threads.

A thread that waits for the database (a PostgreSQL round trip, an SQLite statement) gives up
the GIL, and when its answer is ready it waits until the thread holding the GIL lets go: at
CPython's default switch interval that can be 5 ms per statement. The lead-capture thread
runs some thirty statements a batch while the event loop parses requests, so at the default
its batches took longer waiting for the GIL than for PostgreSQL. At 1 ms, with 32 clients
sending single leads back to back (three runs each, medians): PostgreSQL 95 → 115 leads/s;
SQLite unchanged within the runs' spread. Bulk requests, which hold the GIL for long
stretches, lose a little: 2 to 7 % in two runs each of ``bench/bulk_ingest.py`` against 5 ms.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.001


def share_between_threads() -> None:
    """Call once a process has started its threads' work (the server's lifespan, the worker)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
