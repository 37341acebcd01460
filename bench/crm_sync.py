"""CRM sync throughput per connector against its vendor fake, and the real-time path's
latency from lead capture to the CRM write.

What it measures, for each of ``--connectors`` (HubSpot, Salesforce, Pipedrive) and each of
``--runs`` runs, on a fresh hub database holding ``--contacts`` (50,000) captured leads:

1. **Push**: one ``push_contacts(..., full=True)`` run of every contact to the vendor's fake
   (``tests/crm/fakes``, served on loopback by a process of its own, as a vendor is);
   records/s = rows over the run's wall time. Checked: the run counts exactly
   ``{"created": contacts}`` and the fake then holds that many contacts.
2. **Pull contacts**: ``--edited`` (1 %) of the contacts are edited in the CRM (first name,
   by a user, after the push), then ``pull(..., "contact", full=True)`` reads all of them back:
   mostly the hub's own writes, which echo suppression must recognise. Checked: no row fails
   (the rows counted ``updated`` should equal the edited ones; a difference is reported).
3. **Pull deals**: ``--deals`` (10,000) deals are made in the CRM as sales would make them,
   each naming one pushed contact of a company (by the deal's lead-id field; on Pipedrive by
   ``person_id``), ~60 % open, ~25 % won, ~15 % lost; then ``pull(..., "deal", full=True)``.
   Checked: exactly ``deals`` opportunities are created and no row fails.

The push and pulls run in this process through the service functions a sync calls, on the
embedded SQLite database (default) or PostgreSQL (``--backend postgres``: the database
``bench_crm``, created if missing, its ``public`` schema dropped and recreated per run).
The leads are seeded once through ``revhub.sales.service.capture_leads`` in batches of
1,000 (SQLite: into a template copied for each run; PostgreSQL: again for each run); the
seeding is not timed.

4. **Real-time path** (HubSpot): a real hub (``revhub serve``; on SQLite with its embedded
   worker, on PostgreSQL with a ``revhub worker`` on the Redis bus), a HubSpot connection
   added with ``revhub crm add``, then single leads captured through ``POST /leads`` at
   ``--rate`` (10/s) for ``--duration`` (30 s), open loop. For each lead: the time from
   sending its request to the moment the fake finished the write holding its e-mail (the
   fake stamps each write it applies; both sides read the same monotonic clock). Target:
   p95 < 2 s (the seed allows 5 min). A lead the fake has not seen ``--drain`` s after the
   last send is lost. The path: the capture commits ``lead.*`` events, the worker's
   ``crm-sync`` consumer queues the contact, and its ``crm-sync`` chore pushes the queue once
   a second (``CHORE_SECONDS``).

Run from the repository root::

    python bench/crm_sync.py [--contacts 50000 --deals 10000 --runs 3]
    python bench/crm_sync.py --contacts 2000 --deals 500 --runs 1 --connectors hubspot

It prints a table per phase and writes ``bench/results/crm_sync.json`` (gitignored; per-run
figures, medians, machine and commit); it exits 1 if a check fails. The hub (this process),
the fake (its own process) and PostgreSQL share the machine's CPUs: the ``CPU`` column
says who used them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common import (
    CAMPAIGNS,
    LAST_NAMES,
    OTHER_CPU_WARN,
    REPO,
    REPS_PER_TERRITORY,
    SALES,
    TERRITORIES,
    HubError,
    LeadFactory,
    _machine_busy_s,
    _proc_stat,
    _servers_cpu_s,
    environment,
    log_tail,
    percentiles_ms,
    reset_postgres,
    revhub,
    sales_hub,
    seed_sales,
    wait_quiet,
    write_json,
)

if str(REPO) not in sys.path:  # the vendor fakes live in tests/crm/fakes
    sys.path.insert(0, str(REPO))

CONNECTORS = ("hubspot", "salesforce", "pipedrive")
PHASES = ("push", "pull", "realtime")
DEFAULT_OUTPUT = REPO / "bench" / "results" / "crm_sync.json"
DEFAULT_POSTGRES = os.environ.get(
    "BENCH_CRM_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench_crm"
)
DEFAULT_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
REALTIME_CONNECTOR = "hubspot"
REALTIME_TARGET_P95_MS = 2_000.0
REALTIME_ALLOWED_MS = 300_000.0  # seed 002: within 5 minutes
SEED_BATCH = 1000
HUBSPOT_TOKEN = "pat-na1-bench-token"  # noqa: S105 (the fake's private-app token)
CREDENTIALS = {
    "hubspot": {"access_token": HUBSPOT_TOKEN},
    "salesforce": {"client_id": "consumer-key", "client_secret": "consumer-secret"},
    "pipedrive": {"api_token": "api-token-1"},
}
THROUGHPUT_KEYS = ("push", "pull_contacts", "pull_deals")

console = Console() if sys.stdout.isatty() else Console(width=160)


class BenchError(Exception):
    """A check failed or the setup broke: the run's figures are not to be trusted."""


# --- the vendor's fake, in a process of its own -----------------------------------------


def _fake_app(crm: str) -> tuple[Any, Any]:
    """(state, ASGI app) of ``crm``'s fake, set up as the tests set it up (seed 002's custom
    fields, the credentials of :data:`CREDENTIALS`)."""
    if crm == "hubspot":
        from tests.crm.fakes.hubspot import HubSpotState
        from tests.crm.fakes.hubspot import build_app as build_hubspot
        from tests.crm.test_hubspot import SEED_CONTACT_PROPERTIES, SEED_DEAL_PROPERTIES

        hubspot = HubSpotState(
            custom_properties={"contacts": SEED_CONTACT_PROPERTIES, "deals": SEED_DEAL_PROPERTIES},
            private_app_token=HUBSPOT_TOKEN,
        )
        return hubspot, build_hubspot(hubspot)
    if crm == "salesforce":
        from tests.crm.fakes.salesforce import SalesforceState
        from tests.crm.fakes.salesforce import build_app as build_salesforce
        from tests.crm.test_salesforce import KEY, SEED_CUSTOM_FIELDS

        salesforce = SalesforceState(
            custom_fields={k: set(v) for k, v in SEED_CUSTOM_FIELDS.items()},
            external_ids={"Lead": {KEY}, "Opportunity": {KEY}},
            client_id=CREDENTIALS["salesforce"]["client_id"],
            client_secret=CREDENTIALS["salesforce"]["client_secret"],
        )
        return salesforce, build_salesforce(salesforce)
    from tests.crm.fakes.pipedrive import PipedriveState
    from tests.crm.fakes.pipedrive import build_app as build_pipedrive
    from tests.crm.test_pipedrive import SEED_DEAL_FIELDS, SEED_PERSON_FIELDS

    pipedrive = PipedriveState(
        custom_fields={"persons": dict(SEED_PERSON_FIELDS), "deals": dict(SEED_DEAL_FIELDS)},
        api_token=CREDENTIALS["pipedrive"]["api_token"],
    )
    return pipedrive, build_pipedrive(pipedrive)


CONTACT_OBJECT = {"hubspot": "contacts", "salesforce": "Lead", "pipedrive": "persons"}
DEAL_OBJECT = {"hubspot": "deals", "salesforce": "Opportunity", "pipedrive": "deals"}


def _live(crm: str, state: Any, obj: str) -> list[dict[str, Any]]:
    records = state.objects[obj].values()
    if crm == "hubspot":
        return [r for r in records if not r["archived"]]
    if crm == "salesforce":
        return [r for r in records if not r["IsDeleted"]]
    return [r for r in records if not r["is_deleted"]]


def _written_emails(crm: str, entry: dict[str, Any]) -> list[str]:
    """The e-mail addresses one entry of a fake's ``written`` list carries."""
    if crm == "hubspot":
        found = [entry.get("properties", {}).get("email")]
    elif crm == "salesforce":
        found = [entry.get("fields", {}).get("Email")]
    else:
        found = [e.get("value") for e in (entry.get("body") or {}).get("emails") or []]
    return [str(e).strip().lower() for e in found if e]


def _stamp_writes(app: Any, crm: str, state: Any, receipts: dict[str, float]) -> None:
    """Note when each e-mail first reached the fake: after every write request, the entries
    it added to ``state.written`` are stamped with the clock (CLOCK_MONOTONIC, which the
    client process reads too)."""
    seen = [0]

    @app.middleware("http")
    async def stamp(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if request.method in {"POST", "PATCH"}:
            now = time.monotonic()
            with state.lock:
                fresh = state.written[seen[0] :]
                seen[0] = len(state.written)
            for entry in fresh:
                for email in _written_emails(crm, entry):
                    receipts.setdefault(email, now)
        return response


def _edit_contacts(crm: str, state: Any, count: int, seed: int) -> int:
    """Change the first name of ``count`` contacts in the CRM, as a user would, from two
    seconds on (after every write of the push, also at Pipedrive's whole seconds), a
    millisecond apart."""
    start = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    with state.lock:
        chosen = random.Random(seed).sample(_live(crm, state, CONTACT_OBJECT[crm]), count)
        for i, record in enumerate(chosen):
            name, at = f"Edited{i}", start + timedelta(milliseconds=i)
            if crm == "hubspot":
                state.edit("contacts", record["id"], {"firstname": name}, at=at)
            elif crm == "salesforce":
                from tests.crm.fakes.salesforce import SALES_REP

                state.edit("Lead", record["Id"], {"FirstName": name}, at=at, by=SALES_REP)
            else:
                state.edit("persons", record["id"], {"first_name": name}, at=at)
    return count


def _put_deals(crm: str, state: Any, deals: list[dict[str, Any]]) -> int:
    """Make each deal in the CRM in the vendor's form, a millisecond apart."""
    base = datetime.now(UTC) + timedelta(seconds=1)
    stages = {
        "hubspot": {"open": "qualifiedtobuy", "won": "closedwon", "lost": "closedlost"},
        "salesforce": {"open": "Prospecting", "won": "Closed Won", "lost": "Closed Lost"},
        "pipedrive": {"open": "open", "won": "won", "lost": "lost"},
    }[crm]
    with state.lock:
        for i, deal in enumerate(deals):
            at = base + timedelta(milliseconds=i)
            stage, closes = stages[deal["status"]], deal["closes"]
            closed = deal["status"] != "open"
            if crm == "hubspot":
                props = {
                    "dealname": deal["name"],
                    "amount": deal["amount"],
                    "dealstage": stage,
                    "marketing_platform_lead_id": deal["lead_id"],
                }
                if closed:
                    props["closedate"] = f"{closes}T12:00:00Z"
                state.put("deals", props, at=at)
            elif crm == "salesforce":
                from tests.crm.fakes.salesforce import SALES_REP

                fields = {
                    "Name": deal["name"],
                    "Amount": float(deal["amount"]),
                    "StageName": stage,
                    "IsWon": deal["status"] == "won",
                    "IsClosed": closed,
                    "CloseDate": closes,
                    "Marketing_Lead_ID__c": deal["lead_id"],
                }
                state.put("Opportunity", fields, at=at, by=SALES_REP)
            else:
                fields = {
                    "title": deal["name"],
                    "value": float(deal["amount"]),
                    "currency": "USD",
                    "status": stage,
                    "person_id": int(deal["crm_id"]),
                }
                if closed:
                    fields["close_time"] = f"{closes}T12:00:00Z"
                state.put("deals", fields, at=at)
    return len(deals)


def _fake_main(crm: str, conn: Connection) -> None:
    """The fake's process: serve ``crm``'s fake on loopback, answer the parent's commands."""
    from tests.crm.fakes.server import serve

    state, app = _fake_app(crm)
    receipts: dict[str, float] = {}
    _stamp_writes(app, crm, state, receipts)

    def held() -> dict[str, int]:
        with state.lock:
            return {
                "contacts": len(_live(crm, state, CONTACT_OBJECT[crm])),
                "deals": len(_live(crm, state, DEAL_OBJECT[crm])),
                "written": len(state.written),
                "calls": len(state.calls),
            }

    commands: dict[str, Callable[..., Any]] = {
        "held": held,
        "receipts": lambda: dict(receipts),
        "edit_contacts": lambda count, seed: _edit_contacts(crm, state, count, seed),
        "put_deals": lambda deals: _put_deals(crm, state, deals),
    }
    with serve(app) as url:
        conn.send(url)
        while True:
            name, args = conn.recv()
            if name == "stop":
                break
            try:
                conn.send(("ok", commands[name](*args)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    conn.send(("ok", None))


class FakeVendor:
    """A vendor's fake in a child process (spawned: no state of this one is shared), as a
    real CRM is another machine: its CPU is not this process's. :meth:`ask` runs a command
    of :func:`_fake_main` there."""

    def __init__(self, crm: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.crm = crm
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_fake_main, args=(crm, child), daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(60):
            self.close()
            raise BenchError(f"the {crm} fake did not start")
        self.url: str = self._conn.recv()

    @property
    def pid(self) -> int:
        return self._proc.pid or 0

    def ask(self, name: str, *args: Any) -> Any:
        self._conn.send((name, args))
        status, value = self._conn.recv()
        if status != "ok":
            raise BenchError(f"the {self.crm} fake failed {name}:\n{value}")
        return value

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("stop", ()))
                if self._conn.poll(15):
                    self._conn.recv()
            except (OSError, EOFError):
                pass
            self._proc.join(timeout=15)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._conn.close()

    def __enter__(self) -> FakeVendor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- CPU accounting -----------------------------------------------------------------------


class Meter:
    """CPUs busy during a phase (1.0 = one CPU throughout): this process (the hub's push or
    pull, or the lead sender), the named processes, PostgreSQL + Redis, and anything else."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.before: list[float] | None = None

    def _read(self) -> list[float] | None:
        try:
            procs = [_proc_stat(p)[1] if p else 0.0 for p in self.pids.values()]
            return [
                _machine_busy_s(),
                time.perf_counter(),
                time.process_time(),
                *procs,
                _servers_cpu_s(),
            ]
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float] | None:
        after = self._read()
        if self.before is None or after is None:
            return None
        d = [a - b for a, b in zip(after, self.before, strict=True)]
        wall, machine, own, servers = d[1], d[0], d[2], d[-1]
        named = dict(zip(self.pids, d[3:-1], strict=True))
        other = max(0.0, machine - own - sum(named.values()) - servers)
        use = {"bench": own, **named, "pg_redis": servers, "other": other}
        return {k: round(max(0.0, v) / wall, 2) for k, v in use.items()}


def cpu_cell(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "-"
    return "/".join(f"{v:.2f}" for v in cpu.values())


# --- the hub's database -------------------------------------------------------------------


@dataclass
class Hub:
    """A hub database opened in this process: the service functions' arguments."""

    data_dir: Path
    url: str
    db: Any  # revhub.core.db.Database
    pii: Any  # revhub.contacts.pii.Pii
    settings: Any  # revhub.core.settings.Settings

    def close(self) -> None:
        self.db.engine.dispose()


def open_hub(data_dir: Path, database_url: str | None) -> Hub:
    from revhub.contacts.pii import pii_for
    from revhub.core.db import Database
    from revhub.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=data_dir, database_url=database_url)  # type: ignore[call-arg]
    url = settings.effective_database_url
    return Hub(data_dir, url, Database.from_url(url), pii_for(settings), settings)


def seed_hub(hub: Hub, contacts: int, seed: int, progress: Progress) -> dict[str, Any]:
    """Migrate, then campaigns, territories with reps, and ``contacts`` new leads through
    the lead-capture service in batches of 1,000 (every one with a last name and a company,
    which a Salesforce Lead requires)."""
    from sqlalchemy import func, select

    from revhub.contacts.models import Contact
    from revhub.migrations import upgrade
    from revhub.sales import assignment, touchpoints
    from revhub.sales import schemas as s
    from revhub.sales.models import Lead
    from revhub.sales.service import capture_leads

    started = time.perf_counter()
    upgrade(hub.url)
    with hub.db.transaction() as session:
        for key, name, channel in CAMPAIGNS:
            campaign = {"key": key, "name": name, "channel": channel}
            touchpoints.create_campaign(
                session, campaign_in=s.CampaignCreate.model_validate(campaign)
            )
        for (name, body), count in zip(TERRITORIES, REPS_PER_TERRITORY, strict=True):
            territory = assignment.create_territory(
                session, territory_in=s.TerritoryCreate.model_validate({"name": name, **body})
            )
            for i in range(count):
                rep = {
                    "name": f"{name} rep {i + 1}",
                    "email": f"rep{i + 1}.{str(territory.id)[-12:]}@bench.example",
                    "territory_id": str(territory.id),
                    "capacity": 1 + i % 3,
                }
                assignment.create_rep(session, rep_in=s.RepCreate.model_validate(rep))
    factory = LeadFactory(
        seed,
        campaigns=[k for k, _, _ in CAMPAIGNS],
        repeat=0.0,
        merge=0.0,
        identify=0.0,
        fresh_anonymous=0.0,
    )
    rng = random.Random(seed)
    task = progress.add_task("seeding leads", total=contacts)
    for start in range(0, contacts, SEED_BATCH):
        items = []
        for _ in range(min(SEED_BATCH, contacts - start)):
            body = factory.next()[1]
            body.setdefault("last_name", rng.choice(LAST_NAMES))
            items.append(body)
        with hub.db.transaction() as session:
            answer = capture_leads(session, hub.pii, items=items)
        if answer.rejected:
            refused = [r for r in answer.results if r.status >= 300][:3]
            raise BenchError(f"seeding: {answer.rejected} leads refused, e.g. {refused}")
        progress.update(task, advance=len(items))
    progress.remove_task(task)
    with hub.db.reading() as session:
        pushable = session.scalar(
            select(func.count(Contact.id))
            .join(Lead, Lead.contact_id == Contact.id)
            .where(Contact.merged_into_id.is_(None), Contact.email_sealed.is_not(None))
        )
    if pushable != contacts:
        raise BenchError(f"seeding made {pushable} pushable contacts, not {contacts}")
    return {"contacts": pushable, "seconds": round(time.perf_counter() - started, 1)}


@contextmanager
def template_hub(options: Options, progress: Progress) -> Iterator[tuple[Path, dict[str, Any]]]:
    """SQLite: a seeded data directory to copy for each run (a fresh hub every time)."""
    with tempfile.TemporaryDirectory(prefix="revhub-bench-crm-template-") as tmp:
        data_dir = Path(tmp) / "data"
        hub = open_hub(data_dir, None)
        try:
            seeded = seed_hub(hub, options.contacts, options.seed, progress)
        finally:
            hub.close()
        yield data_dir, seeded


@contextmanager
def run_hub(
    options: Options, template: Path | None, progress: Progress
) -> Iterator[tuple[Hub, dict[str, Any] | None]]:
    """A fresh hub holding the seeded leads: the SQLite template copied, or the PostgreSQL
    database reset and seeded again."""
    with tempfile.TemporaryDirectory(prefix="revhub-bench-crm-") as tmp:
        data_dir = Path(tmp) / "data"
        seeded = None
        if options.backend == "sqlite":
            assert template is not None
            shutil.copytree(template, data_dir)
            hub = open_hub(data_dir, None)
        else:
            reset_postgres(options.postgres_url)
            hub = open_hub(data_dir, options.postgres_url)
            seeded = seed_hub(hub, options.contacts, options.seed, progress)
        try:
            yield hub, seeded
        finally:
            hub.close()


def connect(hub: Hub, crm: str, url: str) -> Any:
    """Store a connection to the fake (credentials sealed, as ``revhub crm add`` does) and
    open it for a sync."""
    from revhub.crm import service

    box = service.credentials_box(hub.settings)
    with hub.db.transaction() as session:
        connection = service.add_connection(
            session, box, name=f"bench-{crm}", crm=crm, credentials=CREDENTIALS[crm], base_url=url
        )
    wanted = inspect.signature(service.open_target).parameters  # the engine is in flux
    from revhub.contacts.pii import pii_for

    given = {
        "mappings": service.mappings_for(hub.settings),
        "db": hub.db,
        "pii": pii_for(hub.settings),
    }
    return service.open_target(connection, box, **{k: v for k, v in given.items() if k in wanted})


def deal_specs(hub: Hub, target: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` deals, each on a different pushed contact of a company (an opportunity
    needs an account), with the contact's lead id and CRM id."""
    from sqlalchemy import select

    from revhub.contacts.models import Contact
    from revhub.crm.models import CrmLink
    from revhub.sales.models import Lead

    with hub.db.reading() as session:
        rows = session.execute(
            select(Lead.id, CrmLink.crm_id)
            .join(Contact, Contact.id == Lead.contact_id)
            .join(CrmLink, CrmLink.hub_id == Contact.id)
            .where(
                CrmLink.connection_id == target.connection_id,
                CrmLink.kind == "contact",
                Contact.account_id.is_not(None),
            )
            .order_by(Lead.id)
        ).all()
    if len(rows) < count:
        raise BenchError(f"only {len(rows)} pushed contacts have an account; {count} deals asked")
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    deals = []
    for i, (lead_id, crm_id) in enumerate(rng.sample(rows, count)):
        roll = rng.random()
        status = "open" if roll < 0.6 else "won" if roll < 0.85 else "lost"
        closes = today + timedelta(
            days=rng.randint(-60, 90) if status == "open" else -rng.randint(0, 60)
        )
        deals.append(
            {
                "name": f"Bench deal {i + 1}",
                "amount": f"{round(rng.lognormvariate(9.5, 1.0), 2):.2f}",
                "status": status,
                "closes": closes.isoformat(),
                "lead_id": str(lead_id),
                "crm_id": crm_id,
            }
        )
    return deals


# --- push and pull ------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    contacts: int
    deals: int
    edited: float
    runs: int
    connectors: tuple[str, ...]
    skip: frozenset[str]
    backend: str
    postgres_url: str
    redis_url: str
    rate: float
    duration: float
    drain: float
    seed: int
    output: Path
    quiet_wait: float
    profile: Path | None


@dataclass
class Timed:
    """One push or pull run, timed."""

    counts: dict[str, int]
    status: str
    seconds: float
    cpu: dict[str, float] | None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "per_second": round(self.rows / self.seconds, 1) if self.seconds else None,
            "seconds": round(self.seconds, 3),
            "counts": self.counts,
            "status": self.status,
            "cpu": self.cpu,
            **({"detail": self.detail} if self.detail else {}),
            **self.extra,
        }


def timed(
    label: str,
    call: Callable[[Callable[[int, int], None]], Any],
    total: int,
    fake: FakeVendor,
    progress: Progress,
    profile: Path | None,
) -> Timed:
    """Run one sync step (``call(progress_callback)`` → SyncRun) with a progress bar, the
    CPU meter and, with ``profile``, cProfile (slower: for hotspots, not figures)."""
    task = progress.add_task(label, total=total)

    def advance(done: int, _total: int) -> None:
        progress.update(task, completed=done)

    meter = Meter({"fake": fake.pid})
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    meter.start()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    run = call(advance)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    progress.remove_task(task)
    if profiler is not None and profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(profile / f"{label.replace(' ', '_')}.pstats"))
    return Timed(dict(run.counts), run.status, seconds, cpu, run.detail or "")


def hub_counts(hub: Hub, target: Any) -> dict[str, int]:
    """Outbox events (all) and open conflicts (of the connection) the hub holds."""
    from sqlalchemy import func, select

    from revhub.core.events.models import OutboxEvent
    from revhub.crm.models import Conflict

    with hub.db.reading() as session:
        events = session.scalar(select(func.count()).select_from(OutboxEvent)) or 0
        conflicts = session.scalar(
            select(func.count(Conflict.id)).where(
                Conflict.connection_id == target.connection_id, Conflict.status == "open"
            )
        )
    return {"outbox_events": events, "open_conflicts": conflicts or 0}


def _grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {f"{k}_added": after[k] - before[k] for k in before}


def throughput_run(
    crm: str, run: int, options: Options, template: Path | None, progress: Progress
) -> dict[str, Any]:
    """Push, pull contacts, pull deals for one connector on a fresh hub and a fresh fake."""
    from sqlalchemy import func, select

    from revhub.crm.pull import pull
    from revhub.crm.push import push_contacts
    from revhub.sales.models import Opportunity

    result: dict[str, Any] = {"run": run, "checks": [], "warnings": []}
    checks, warnings = result["checks"], result["warnings"]
    profile = options.profile / f"{crm}-run{run}" if options.profile and run == 1 else None
    with run_hub(options, template, progress) as (hub, seeded), FakeVendor(crm) as fake:
        if seeded:
            result["seeded"] = seeded
        target = connect(hub, crm, fake.url)
        try:
            result["busy_before"] = (
                wait_quiet(options.quiet_wait) if options.quiet_wait > 0 else None
            )
            counted = hub_counts(hub, target)
            push = timed(
                f"{crm} push",
                lambda advance: push_contacts(
                    hub.db, hub.pii, target, trigger="bench", full=True, progress=advance
                ),
                options.contacts,
                fake,
                progress,
                profile,
            )
            held = fake.ask("held")
            push.extra["fake_calls"] = held["calls"]
            counted, before_push = hub_counts(hub, target), counted
            push.extra |= _grown(before_push, counted)
            if push.counts != {"created": options.contacts}:
                checks.append(f"push counted {push.counts}, not {{'created': {options.contacts}}}")
            if held["contacts"] != options.contacts:
                checks.append(f"the fake holds {held['contacts']} contacts after the push")
            if "push" not in options.skip:
                result["push"] = push.as_dict()
            if "pull" in options.skip:
                return result
            edited = fake.ask(
                "edit_contacts", round(options.contacts * options.edited), options.seed + run
            )
            before = fake.ask("held")["calls"]
            contacts = timed(
                f"{crm} pull contacts",
                lambda advance: pull(
                    hub.db,
                    hub.pii,
                    target,
                    "contact",
                    trigger="bench",
                    full=True,
                    progress=advance,
                ),
                options.contacts,
                fake,
                progress,
                profile,
            )
            contacts.extra |= {"edited": edited, "fake_calls": fake.ask("held")["calls"] - before}
            counted, before_pull = hub_counts(hub, target), counted
            contacts.extra |= _grown(before_pull, counted)
            if contacts.extra["open_conflicts_added"]:
                warnings.append(
                    f"pull contacts opened {contacts.extra['open_conflicts_added']} conflicts "
                    f"(and published {contacts.extra['outbox_events_added']} outbox events)"
                )
            result["pull_contacts"] = contacts.as_dict()
            if contacts.counts.get("failed"):
                checks.append(f"pull contacts: {contacts.counts['failed']} rows failed")
            if contacts.rows < options.contacts:
                checks.append(f"pull contacts read {contacts.rows} of {options.contacts} records")
            if contacts.counts.get("updated", 0) != edited:
                warnings.append(
                    f"pull contacts: {contacts.counts.get('updated', 0)} updated, {edited} were "
                    f"edited in the CRM ({contacts.counts})"
                )
            deals = deal_specs(hub, target, options.deals, options.seed + run)
            fake.ask("put_deals", deals)
            before = fake.ask("held")["calls"]
            pulled = timed(
                f"{crm} pull deals",
                lambda advance: pull(
                    hub.db, hub.pii, target, "deal", trigger="bench", full=True, progress=advance
                ),
                options.deals,
                fake,
                progress,
                profile,
            )
            with hub.db.reading() as session:
                made = session.scalar(
                    select(func.count(Opportunity.id)).where(Opportunity.source == target.name[:32])
                )
            won = sum(d["status"] == "won" for d in deals)
            pulled.extra |= {
                "opportunities": made,
                "won": won,
                "fake_calls": fake.ask("held")["calls"] - before,
            } | _grown(counted, hub_counts(hub, target))
            result["pull_deals"] = pulled.as_dict()
            if pulled.counts.get("created") != options.deals or pulled.counts.get("failed"):
                checks.append(f"pull deals counted {pulled.counts}, not {options.deals} created")
            if made != options.deals:
                checks.append(f"the hub holds {made} opportunities from {crm}, not {options.deals}")
        finally:
            target.close()
    return result


# --- the real-time path -------------------------------------------------------------------


@dataclass
class Sent:
    email: str
    sent: float
    answered: float = 0.0
    status: int = 0


def send_open_loop(
    client: httpx.Client, bodies: list[dict[str, Any]], rate: float, progress: Progress
) -> list[Sent]:
    """POST each body to ``/leads`` at its scheduled time (``i / rate`` from the start), from
    a pool of senders (open loop: a slow answer does not hold the next send back)."""
    task = progress.add_task("real-time leads sent", total=len(bodies))
    sent: list[Sent] = []
    lock = threading.Lock()

    def post(body: dict[str, Any]) -> None:
        item = Sent(str(body["email"]).strip().lower(), time.monotonic())
        try:
            response = client.post(f"{SALES}/leads", json=body)
            item.status = response.status_code
        except httpx.HTTPError:
            item.status = -1
        item.answered = time.monotonic()
        with lock:
            sent.append(item)
        progress.update(task, advance=1)

    start = time.monotonic() + 0.2
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, body)
    progress.remove_task(task)
    return sent


def wait_received(
    fake: FakeVendor, emails: set[str], drain: float, progress: Progress
) -> dict[str, float]:
    """The fake's receipts once it holds every e-mail, or after ``drain`` seconds."""
    task = progress.add_task("real-time leads in the CRM", total=len(emails))
    deadline = time.monotonic() + drain
    while True:
        receipts: dict[str, float] = fake.ask("receipts")
        got = len(emails & receipts.keys())
        progress.update(task, completed=got)
        if got == len(emails) or time.monotonic() > deadline:
            progress.remove_task(task)
            return receipts
        time.sleep(0.25)


def realtime_run(run: int, options: Options, progress: Progress) -> dict[str, Any]:
    """One real-time run on a fresh hub (``common.sales_hub``) and a fresh HubSpot fake."""
    crm = REALTIME_CONNECTOR
    result: dict[str, Any] = {"run": run, "checks": [], "warnings": []}
    with (
        FakeVendor(crm) as fake,
        sales_hub(
            options.backend, postgres_url=options.postgres_url, redis_url=options.redis_url
        ) as hub,
    ):
        seeded = seed_sales(hub, seed=options.seed + run)
        env = hub.env | {"REVHUB_CRM_CREDENTIALS": json.dumps(CREDENTIALS[crm])}
        revhub(
            "crm",
            "add",
            f"bench-{crm}",
            "--crm",
            crm,
            "--base-url",
            fake.url,
            env=env,
            cwd=hub.workdir,
        )
        factory = LeadFactory(
            options.seed + 100 + run,
            campaigns=seeded.campaigns,
            repeat=0.0,
            merge=0.0,
            identify=0.0,
            fresh_anonymous=0.0,
        )
        headers = {"X-API-Key": hub.api_key}
        with httpx.Client(base_url=hub.base_url, headers=headers, timeout=30.0) as client:
            warm = [factory.next()[1] for _ in range(5)]  # the connection picked up, warm
            warmed = send_open_loop(client, warm, 5.0, progress)
            receipts = wait_received(fake, {w.email for w in warmed}, 30.0, progress)
            if not {w.email for w in warmed} <= receipts.keys():
                logs = "\n".join(
                    f"--- {name}:\n{log_tail(hub.workdir / name, 15)}"
                    for name in ("server.log", "worker.log")
                    if (hub.workdir / name).exists()
                )
                raise BenchError(
                    "warm-up: the leads did not reach the HubSpot fake in 30 s (answers "
                    f"{[w.status for w in warmed]}, fake {fake.ask('held')})\n{logs}"
                )
            result["busy_before"] = (
                wait_quiet(options.quiet_wait) if options.quiet_wait > 0 else None
            )
            bodies = [factory.next()[1] for _ in range(round(options.rate * options.duration))]
            meter = Meter({"server": hub.server_pid, "worker": hub.worker_pid, "fake": fake.pid})
            meter.start()
            sent = send_open_loop(client, bodies, options.rate, progress)
            accepted = {s.email: s for s in sent if s.status == 201}
            receipts = wait_received(fake, set(accepted), options.drain, progress)
            cpu = meter.stop()
    latencies = [receipts[e] - s.sent for e, s in accepted.items() if e in receipts]
    lost = sorted(set(accepted) - receipts.keys())
    statuses = Counter(str(s.status) for s in sent)
    figures = percentiles_ms(latencies)
    result |= {
        "connector": crm,
        "rate": options.rate,
        "duration_s": options.duration,
        "sent": len(sent),
        "accepted": len(accepted),
        "answers": dict(statuses),
        "received": len(latencies),
        "lost": len(lost),
        "lost_examples": lost[:5],
        "latency": figures,
        "http": percentiles_ms([s.answered - s.sent for s in sent]),
        "cpu": cpu,
    }
    if len(accepted) != len(sent):
        result["checks"].append(f"real-time: answers {dict(statuses)}, not all 201")
    if lost:
        result["checks"].append(f"real-time: {len(lost)} leads never reached the fake")
    return result


# --- the report ---------------------------------------------------------------------------


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median, in percent: how far apart the runs were."""
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    return round(100.0 * (max(values) - min(values)) / middle, 1) if middle else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in THROUGHPUT_KEYS:
        rates = [r[key]["per_second"] for r in runs if key in r and r[key]["per_second"]]
        seconds = [r[key]["seconds"] for r in runs if key in r]
        if rates:
            summary[key] = {
                "per_second": round(statistics.median(rates), 1),
                "seconds": round(statistics.median(seconds), 2),
                "min_per_second": min(rates),
                "max_per_second": max(rates),
                "spread_percent": spread(rates),
            }
    return summary


def summarise_realtime(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    found = {k: [r["latency"][k] for r in runs if r["latency"][k] is not None] for k in keys}
    median = {k: round(statistics.median(v), 1) if v else None for k, v in found.items()}
    p95 = median["p95_ms"]
    return median | {
        "p95_spread_percent": spread(found["p95_ms"]),
        "lost": sum(r["lost"] for r in runs),
        "sent": sum(r["sent"] for r in runs),
        "target_p95_ms": REALTIME_TARGET_P95_MS,
        "meets_target": p95 is not None and p95 < REALTIME_TARGET_P95_MS,
        "within_seed_allowance": found["max_ms"] != []
        and max(found["max_ms"]) < REALTIME_ALLOWED_MS,
    }


def print_tables(report: dict[str, Any]) -> None:
    names = {"push": "push", "pull_contacts": "pull contacts", "pull_deals": "pull deals"}
    if report["throughput"]:
        table = Table(
            title=f"CRM sync throughput on {report['backend']}: {report['contacts']:,} contacts, "
            f"{report['deals']:,} deals, {report['runs']} run(s) per connector",
            caption="records/s = rows the run logged over its wall time; CPU b/f/db/o = CPUs "
            "busy in this process (the hub's sync)/the fake/PostgreSQL+Redis/other",
        )
        for name in ("connector", "run", "phase", "rows", "seconds", "records/s", "counts"):
            table.add_column(
                name, justify="right" if name in {"rows", "seconds", "records/s"} else "left"
            )
        table.add_column("CPU b/f/db/o", justify="right")
        for crm, data in report["throughput"].items():
            for r in data["per_run"]:
                for key, label in names.items():
                    if key not in r:
                        continue
                    p = r[key]
                    counts = ", ".join(f"{k} {v}" for k, v in sorted(p["counts"].items()))
                    table.add_row(
                        crm,
                        str(r["run"]),
                        label,
                        f"{p['rows']:,}",
                        f"{p['seconds']:.1f}",
                        f"{p['per_second']:,.0f}",
                        counts,
                        cpu_cell(p["cpu"]),
                    )
            for key, label in names.items():
                m = data["median"].get(key)
                if m:
                    span = (
                        "" if m["spread_percent"] is None else f"spread {m['spread_percent']:.0f} %"
                    )
                    table.add_row(
                        crm,
                        "median",
                        label,
                        "",
                        f"{m['seconds']:.1f}",
                        f"{m['per_second']:,.0f}",
                        span,
                        "",
                        style="bold",
                    )
        console.print(table)
    if report["realtime"]["per_run"]:
        data = report["realtime"]
        table = Table(
            title=f"Real-time path ({data['connector']}, {report['backend']}): lead capture → "
            f"CRM write, {data['rate']:g} leads/s for {data['duration_s']:g} s",
            caption="latency = from sending POST /leads to the fake having applied the write "
            "holding the lead's e-mail; CPU = this process/server/worker/fake/db/other",
        )
        for name in ("run", "sent", "lost", "p50 ms", "p95 ms", "p99 ms", "max ms", "HTTP p50"):
            table.add_column(name, justify="right")
        table.add_column("CPU", justify="right")
        for r in data["per_run"]:
            lat = r["latency"]
            table.add_row(
                str(r["run"]),
                str(r["sent"]),
                str(r["lost"]),
                *(
                    f"{lat[k]:.0f}" if lat[k] is not None else "-"
                    for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
                ),
                f"{r['http']['p50_ms']:.0f}",
                cpu_cell(r["cpu"]),
            )
        m = data["median"]
        verdict = "[green]met[/green]" if m["meets_target"] else "[red]missed[/red]"
        table.add_row(
            "median",
            "",
            str(m["lost"]),
            *(
                f"{m[k]:.0f}" if m[k] is not None else "-"
                for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
            ),
            f"p95 < {REALTIME_TARGET_P95_MS:,.0f} {verdict}",
            "",
            style="bold",
        )
        console.print(table)
    busy = [
        f"{crm} run {r['run']} ({key})"
        for crm, data in report["throughput"].items()
        for r in data["per_run"]
        for key in THROUGHPUT_KEYS
        if key in r and r[key]["cpu"] and r[key]["cpu"]["other"] > OTHER_CPU_WARN
    ] + [
        f"real-time run {r['run']}"
        for r in report["realtime"]["per_run"]
        if r["cpu"] and r["cpu"]["other"] > OTHER_CPU_WARN
    ]
    if busy:
        console.print(
            f"[yellow]other processes kept more than {OTHER_CPU_WARN:g} CPU busy during "
            f"{', '.join(busy)}; rerun on a quiet machine.[/yellow]"
        )
    for line in report["checks"]:
        console.print(f"[bold red]check failed:[/bold red] {line}")
    for line in report["warnings"]:
        console.print(f"[yellow]note:[/yellow] {line}")


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--contacts", type=int, default=50_000, help="leads in the hub, pushed (50000)")
    add("--deals", type=int, default=10_000, help="deals made in the CRM, pulled (10000)")
    add("--edited", type=float, default=0.01, help="share of contacts edited in the CRM (0.01)")
    add("--runs", type=int, default=3, help="runs per connector and of the real-time path (3)")
    add("--connectors", default=",".join(CONNECTORS), help="comma-separated (all three)")
    add(
        "--skip",
        action="append",
        default=[],
        help="push, pull and/or realtime (repeatable "
        "or comma-separated; pull needs the push, which then runs untimed)",
    )
    add("--backend", choices=("sqlite", "postgres"), default="sqlite", help="(sqlite)")
    add("--postgres", default=DEFAULT_POSTGRES, help="database (schema dropped each run)")
    add("--redis-url", default=DEFAULT_REDIS, help="Redis of the real-time hub on PostgreSQL")
    add("--rate", type=float, default=10.0, help="real-time leads per second (10)")
    add("--duration", type=float, default=30.0, help="real-time sending, seconds (30)")
    add("--drain", type=float, default=30.0, help="wait for the last leads' writes, s (30)")
    add("--seed", type=int, default=1, help="random seed of the generated data")
    add("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file")
    add(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each measured phase, wait up to this many s for an idle machine (60; 0: no)",
    )
    add(
        "--profile",
        type=Path,
        metavar="DIR",
        help="cProfile the push and pulls of run 1 into DIR (slower: for hotspots)",
    )
    ns = parser.parse_args(argv)
    connectors = tuple(c.strip() for c in ns.connectors.split(",") if c.strip())
    skip = frozenset(s.strip() for item in ns.skip for s in item.split(",") if s.strip())
    if unknown := set(connectors) - set(CONNECTORS):
        parser.error(f"--connectors: unknown {sorted(unknown)}; of {', '.join(CONNECTORS)}")
    if unknown := skip - set(PHASES):
        parser.error(f"--skip: unknown {sorted(unknown)}; of {', '.join(PHASES)}")
    if min(ns.contacts, ns.deals, ns.runs, ns.rate, ns.duration) <= 0:
        parser.error("counts, --runs, --rate and --duration must be positive")
    if ns.deals > ns.contacts:
        parser.error("--deals: each deal names a different contact; at most --contacts")
    if not 0 <= ns.edited <= 1:
        parser.error("--edited is a share, 0 to 1")
    return Options(
        ns.contacts,
        ns.deals,
        ns.edited,
        ns.runs,
        connectors,
        skip,
        ns.backend,
        ns.postgres,
        ns.redis_url,
        ns.rate,
        ns.duration,
        ns.drain,
        ns.seed,
        ns.output,
        ns.quiet_wait,
        ns.profile,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("REVHUB_")]:
        del os.environ[name]  # the flags decide the setup, not the caller's hub settings
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "benchmark": "crm_sync",
        "backend": options.backend,
        "contacts": options.contacts,
        "deals": options.deals,
        "edited_share": options.edited,
        "runs": options.runs,
        "seed": options.seed,
        "throughput": {},
        "realtime": {
            "connector": REALTIME_CONNECTOR,
            "rate": options.rate,
            "duration_s": options.duration,
            "per_run": [],
        },
        "checks": [],
        "warnings": [],
        "failures": [],
    }
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        throughput = bool({"push", "pull"} - options.skip)
        with ExitStack() as stack:
            template = None
            if options.backend == "sqlite" and throughput:
                console.print(f"[dim]seeding {options.contacts:,} leads into a template hub[/dim]")
                template, seeded = stack.enter_context(template_hub(options, progress))
                report["seeding"] = seeded
                console.print(f"[dim]  seeded in {seeded['seconds']:.0f} s[/dim]")
            for crm in options.connectors if throughput else ():
                runs = []
                for run in range(1, options.runs + 1):
                    console.print(f"[dim]{crm} run {run}/{options.runs}[/dim]")
                    try:
                        result = throughput_run(crm, run, options, template, progress)
                    except Exception as exc:  # a broken run must not lose the other figures
                        console.print(f"[bold red]{crm} run {run} failed:[/bold red] {exc}")
                        report["failures"].append(f"{crm} run {run}: {exc!r}")
                        traceback.print_exc()
                        continue
                    for key in THROUGHPUT_KEYS:
                        if key in result:
                            p = result[key]
                            console.print(
                                f"[dim]  {key}: {p['per_second']:,.0f}/s "
                                f"({p['rows']:,} in {p['seconds']:.1f} s) {p['counts']}[/dim]"
                            )
                    report["checks"] += [f"{crm} run {run}: {c}" for c in result["checks"]]
                    report["warnings"] += [f"{crm} run {run}: {w}" for w in result["warnings"]]
                    runs.append(result)
                if runs:
                    report["throughput"][crm] = {"per_run": runs, "median": summarise(runs)}
        if "realtime" not in options.skip:
            for run in range(1, options.runs + 1):
                console.print(f"[dim]real-time run {run}/{options.runs}[/dim]")
                try:
                    result = realtime_run(run, options, progress)
                except (BenchError, HubError) as exc:
                    console.print(f"[bold red]real-time run {run} failed:[/bold red] {exc}")
                    report["failures"].append(f"real-time run {run}: {exc}")
                    continue
                lat = result["latency"]
                console.print(
                    f"[dim]  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, max "
                    f"{lat['max_ms']} ms, lost {result['lost']}[/dim]"
                )
                report["checks"] += [f"real-time run {run}: {c}" for c in result["checks"]]
                report["realtime"]["per_run"].append(result)
            if report["realtime"]["per_run"]:
                report["realtime"]["median"] = summarise_realtime(report["realtime"]["per_run"])
    report |= environment(started, (options.backend,), options.postgres_url)
    report["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["note"] = (
        f"the hub's sync (this process), the vendor fake (its own process), PostgreSQL and "
        f"Redis share the same {os.cpu_count()} CPUs; the fakes are tests/crm/fakes"
    )
    write_json(report, options.output)
    print_tables(report)
    console.print(f"JSON written to {options.output}")
    if report["checks"]:
        return 1
    return 2 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
