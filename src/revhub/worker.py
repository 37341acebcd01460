"""Assemble the worker: the bus configuration picks, the consumers every domain registers.

Domains add their consumers here as they land (each from its own ``jobs.py``); modules named
in ``REVHUB_PLUGINS`` may register more through a ``register(registry)`` function, and jobs
through a ``register_jobs(job_registry)`` function (either is optional).

In embedded mode ``revhub serve`` runs the worker itself, by default in a child process of
its own (:class:`WorkerProcess`).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import structlog

from revhub.attribution import jobs as attribution_jobs
from revhub.contacts.pii import pii_for
from revhub.core.children import end_child
from revhub.core.db import Database
from revhub.core.events import outbox
from revhub.core.events.bus import make_bus
from revhub.core.events.consumers import ConsumerRegistry, default_registry
from revhub.core.events.envelope import TOPICS
from revhub.core.events.service import replay_requested
from revhub.core.events.worker import Worker
from revhub.core.jobs.defaults import build_registry
from revhub.core.jobs.registry import JobRegistry
from revhub.core.jobs.scheduler import TICK_SECONDS, Scheduler
from revhub.core.settings import Settings
from revhub.core.webhooks.jobs import delivery_chore, secret_box, webhooks_consumer
from revhub.core.webhooks.service import CONSUMER as WEBHOOKS
from revhub.crm import jobs as crm_jobs
from revhub.crm.service import credentials_box, mappings_for
from revhub.sales import jobs as sales_jobs

log = structlog.get_logger("revhub.worker")

RESTART_WAIT_SECONDS = 5.0
"""How long a worker process found dead waits before it is started again (one that dies
at once, a database it cannot open, does not spin)."""
WATCH_SECONDS = 0.5
"""How often the API process looks whether the worker process is alive (and, at shutdown,
how long it may take to notice it is stopping)."""
STOP_TIMEOUT_SECONDS = 35.0
"""Longer than ``Worker.join``'s 30 s: the child finishes the events in hand first."""


def consumer_registry(settings: Settings) -> ConsumerRegistry:
    registry = default_registry()
    registry.register(webhooks_consumer())
    registry.register(sales_jobs.alerts_consumer())
    registry.register(attribution_jobs.analytics_consumer())
    registry.register(crm_jobs.crm_sync_consumer())
    for module_name in settings.plugins:
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):
            module.register(registry)
    return registry


def job_registry(settings: Settings, consumers: ConsumerRegistry) -> JobRegistry:
    return build_registry(
        settings,
        consumers=[c.name for c in consumers.active()],
        domains=(sales_jobs.register_jobs, attribution_jobs.register_jobs, crm_jobs.register_jobs),
    )


def build_worker(settings: Settings, db: Database) -> Worker:
    bus = make_bus(
        db,
        kind=settings.bus,
        redis_url=settings.redis_url,
        topics=TOPICS,
        visibility_timeout_ms=int(settings.visibility_timeout_seconds * 1000),
        prefix=settings.redis_prefix,
    )
    registry = consumer_registry(settings)
    worker = Worker(db=db, bus=bus, registry=registry, policy_for=settings.policy_for)
    deliver = delivery_chore(db, box=secret_box(settings), policy=settings.policy_for(WEBHOOKS))
    worker.chores.append(("webhook-deliveries", 0.5, deliver))
    worker.chores.append(
        (
            "replay-dead-letters",
            1.0,
            lambda: replay_requested(db, registry=registry, policy_for=settings.policy_for),
        )
    )
    crm = crm_jobs.sync_chore(
        db, pii_for(settings), credentials_box(settings), mappings_for(settings)
    )
    worker.chores.append(("crm-sync", crm_jobs.CHORE_SECONDS, crm.tick))
    scheduler = Scheduler(db=db, registry=job_registry(settings, registry), worker=worker.name)
    worker.chores.append(("scheduler", TICK_SECONDS, scheduler.tick))
    return worker


class WorkerProcess:
    """The embedded worker in a child process of ``revhub serve`` (``REVHUB_WORKER_PROCESS``,
    the default in embedded mode; off, it runs in threads of the API process).

    In threads its consumers took the GIL from the event loop, the capture queue and bulk
    requests; here they run on the machine's other core. On SQLite, against the threads in
    the same hour (runs interleaved): 200 single leads/s for 60 s, p95 48.7 and 81.0 ms →
    39.2 and 43.1 ms (``bench/lead_capture.py``); bulk touchpoints 4,744 and 3,155/s →
    5,148 and 5,325/s (``bench/bulk_ingest.py``).

    The child hears of this process's commits (and of the capture process's, which this
    process announces) through a pipe: a byte per ``outbox.NEWS`` arrival, never waited
    for (a full pipe already holds news). A child found dead is started again; it stops
    when the pipe closes: at :meth:`stop`, or when the API process is gone.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._child: BaseProcess | None = None
        self._news: Connection | None = None
        self._news_lock = threading.Lock()
        """Held to write to the pipe and to close it: a write after the close could land
        in whatever file was opened next under the same descriptor."""
        self._unlisten: Callable[[], None] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="worker-process", daemon=True)

    @property
    def process(self) -> BaseProcess | None:
        return self._child

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        self._start_child()
        self._unlisten = outbox.NEWS.listen(self._tell)
        self._watcher.start()

    def _start_child(self) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=run_apart, args=(reader, self._settings), name="revhub-worker", daemon=True
        )
        child.start()
        reader.close()
        os.set_blocking(writer.fileno(), False)
        self._child, self._news = child, writer

    def _tell(self) -> None:
        with self._news_lock, contextlib.suppress(OSError):  # full: news is pending already
            if self._news is not None:
                os.write(self._news.fileno(), b".")

    def _watch(self) -> None:
        while not self._stopping.is_set():
            child = self._child
            if child is not None:
                child.join(WATCH_SECONDS)
            if self._stopping.is_set() or child is None or child.is_alive():
                continue
            log.error("worker_process_died", exit_code=child.exitcode)
            self._close_news()
            if not self._stopping.wait(RESTART_WAIT_SECONDS):
                self._start_child()

    def _close_news(self) -> None:
        with self._news_lock:
            news, self._news = self._news, None
        if news is not None:
            news.close()

    def stop(self) -> None:
        """Close the pipe (the child's signal to finish the events in hand and exit) and
        wait for it; kill it if it does not."""
        self._stopping.set()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._watcher.is_alive():
            self._watcher.join()
        self._close_news()
        child, self._child = self._child, None
        if child is not None:
            end_child(child, STOP_TIMEOUT_SECONDS)


def run_apart(news: Connection, settings: Settings) -> None:
    """The child: run the worker until the API process closes the pipe (or is gone), waking
    its consumers at each byte of news."""
    from revhub.core.interpreter import share_between_threads
    from revhub.core.memory import tune_garbage_collector
    from revhub.core.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    db = Database.from_url(settings.effective_database_url)
    worker = build_worker(settings, db)
    tune_garbage_collector(timed=False)
    share_between_threads()
    stop = threading.Event()
    worker.start(stop)
    try:
        while os.read(news.fileno(), 4096):
            outbox.NEWS.arrived()
    except (OSError, KeyboardInterrupt):
        pass
    finally:
        stop.set()
        worker.join(30)
        db.engine.dispose()
