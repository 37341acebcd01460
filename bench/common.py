"""What the benchmarks share: where the repository is and which commit is measured; for
``lead_capture.py`` and ``bulk_ingest.py`` also a fresh sales hub on SQLite or PostgreSQL,
realistic leads and touchpoints, seeding through the API, CPU accounting and percentiles."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def git(*args: str) -> str | None:
    """``git ARGS`` in the repository, or None when git is missing or fails."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


# --- a sales hub for lead_capture.py and bulk_ingest.py -----------------------------------
#
# One fresh hub per run, on either backend, started as a user runs it:
#
# * ``sqlite``: embedded mode, a temporary data directory, ``revhub serve`` with its
#   embedded worker in a child process (the default when no REVHUB_* is set);
# * ``postgres``: production mode on the database ``bench`` (schema dropped and recreated),
#   the Redis bus and limiter under a key prefix of its own (deleted after), ``revhub serve``
#   plus a separate ``revhub worker`` process.
#
# REVHUB_* variables of the caller are not passed on: the backend flags decide everything.

BACKENDS = ("sqlite", "postgres")
DEFAULT_POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench"
)
DEFAULT_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
SALES = "/api/v1/integrations/sales"
UNTHROTTLED_LIMIT = json.dumps({"rate": 100_000, "burst": 100_000})
KEY_PATTERN = re.compile(r"rhk_[A-Za-z0-9_-]+")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class HubError(Exception):
    """The hub could not be started, seeded or stopped cleanly."""


@dataclass(frozen=True)
class SalesHub:
    backend: str
    base_url: str
    api_key: str  # role "sales"
    server_pid: int
    worker_pid: int | None  # the separate ``revhub worker`` (PostgreSQL only)
    workdir: Path
    env: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The hub's environment (its secrets too): for ``revhub`` commands on the same hub."""
    metrics_key: str = field(default="", repr=False)
    """A key of role ``analyst``: to read ``/metrics``."""

    def scrape(self) -> dict[str, dict[str, float]]:
        """The server's histograms (one API process's, with ``--api-processes`` > 1), as
        ``{name or name{label=value,…}: {"count", "sum", "le=<bound>", …}}``: to say where
        latency went."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        response = httpx.get(
            f"{self.base_url}/metrics", headers={"X-API-Key": self.metrics_key}, timeout=10
        )
        response.raise_for_status()
        text = response.text
        found: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            if family.type != "histogram":
                continue
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                name = f"{family.name}{{{labels}}}" if labels else family.name
                part = sample.name.removeprefix(family.name).lstrip("_")
                part = f"le={sample.labels['le']}" if part == "bucket" else part
                found.setdefault(name, {})[part] = sample.value
        return found


def log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _hub_env(
    backend: str, workdir: Path, postgres_url: str, redis_url: str, prefix: str, src: Path | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVHUB_")}
    if src is not None:  # another source tree first on the path (e.g. a `git archive` snapshot)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    env.update(
        REVHUB_DATA_DIR=str(workdir / "data"),
        REVHUB_RATE_LIMIT=UNTHROTTLED_LIMIT,
        COLUMNS="300",  # rich must not wrap the line holding the key
        NO_COLOR="1",
    )
    if backend == "postgres":
        env.update(
            REVHUB_MODE="production",
            REVHUB_DATABASE_URL=postgres_url,
            REVHUB_REDIS_URL=redis_url,
            REVHUB_REDIS_PREFIX=prefix,
            REVHUB_BUS="redis",
            **{f"REVHUB_{n}": secrets.token_urlsafe(32) for n in ("JWT_SECRET", "PII_KEY")},
            REVHUB_AUDIT_KEY=secrets.token_urlsafe(32),
        )
    return env


def revhub(*args: str, env: dict[str, str], cwd: Path) -> str:
    command = [sys.executable, "-m", "revhub", *args]
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HubError(f"`revhub {' '.join(args)}` exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def reset_postgres(url: str) -> None:
    """Drop and recreate the ``public`` schema of ``url``'s database (creating the database
    first if it is missing)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
            )
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()
    engine = create_engine(target, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (both ``serve`` and ``worker`` stop cleanly on it), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HubError(f"the server exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise HubError(f"/readyz not ready after {READY_TIMEOUT_S:g} s:\n{log_tail(log_path)}")


def _wait_worker(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HubError(f"the worker exited with {proc.returncode}:\n{log_tail(log_path)}")
        if "worker_started" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise HubError(f"the worker did not start in {READY_TIMEOUT_S:g} s:\n{log_tail(log_path)}")


def created_key(workdir: Path, env: dict[str, str], name: str, role: str) -> str:
    """A new API key (``revhub keys create``, valid for a day) of ``role`` on the hub of
    ``env``."""
    out = revhub(
        "keys", "create", "--name", name, "--role", role, "--expires-in-days", "1",
        env=env, cwd=workdir,
    )  # fmt: skip
    match = KEY_PATTERN.search(out)
    if match is None:
        raise HubError(f"no API key in the output of `revhub keys create`:\n{out}")
    return match.group(0)


@contextmanager
def sales_hub(
    backend: str,
    *,
    postgres_url: str,
    redis_url: str,
    src: Path | None = None,
    api_processes: int = 1,
) -> Iterator[SalesHub]:
    """A fresh hub on ``backend``: migrated, a ``sales`` API key, ``serve`` (and on
    PostgreSQL a ``worker``) running; everything stopped and cleaned up afterwards. With
    ``src``, the hub's processes import ``revhub`` from that directory instead of the
    installed one. ``api_processes`` > 1 runs ``serve --workers N`` (PostgreSQL only:
    embedded mode is one process)."""
    if api_processes > 1 and backend != "postgres":
        raise HubError("--api-processes > 1 needs the postgres backend")
    if backend not in BACKENDS:
        raise HubError(f"unknown backend {backend!r}; one of {BACKENDS}")
    prefix = f"bench-sales-{secrets.token_hex(4)}:"
    with tempfile.TemporaryDirectory(prefix=f"revhub-bench-{backend}-") as tmp, ExitStack() as st:
        workdir = Path(tmp)
        env = _hub_env(backend, workdir, postgres_url, redis_url, prefix, src)
        if backend == "postgres":
            reset_postgres(postgres_url)
            st.callback(delete_redis_keys, redis_url, prefix)
        revhub("migrate", env=env, cwd=workdir)
        sales_key, metrics_key = (
            created_key(workdir, env, name, role)
            for name, role in (("bench-sales", "sales"), ("bench-metrics", "analyst"))
        )
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        server_log = workdir / "server.log"
        log = st.enter_context(server_log.open("wb"))
        command = [sys.executable, "-m", "revhub", "serve", "--host", "127.0.0.1"]
        command += ["--workers", str(api_processes)] if api_processes > 1 else []
        server = subprocess.Popen(
            [*command, "--port", str(port)], env=env, cwd=workdir, stdout=log, stderr=log
        )
        st.callback(_stop, server)
        worker = None
        if backend == "postgres":
            worker_log = workdir / "worker.log"
            wlog = st.enter_context(worker_log.open("wb"))
            worker = subprocess.Popen(
                [sys.executable, "-m", "revhub", "worker"],
                env=env,
                cwd=workdir,
                stdout=wlog,
                stderr=wlog,
            )
            st.callback(_stop, worker)
            _wait_worker(worker, worker_log)
        _wait_ready(server, base_url, server_log)
        yield SalesHub(
            backend,
            base_url,
            sales_key,
            server.pid,
            worker.pid if worker else None,
            workdir,
            env,
            metrics_key,
        )
        for proc, path in ((server, server_log), (worker, workdir / "worker.log")):
            if proc is not None and proc.poll() is not None:
                raise HubError(f"process {proc.pid} died during the run:\n{log_tail(path)}")


def add_in_process_options(parser: argparse.ArgumentParser, *, default_output: Path) -> None:
    """The options of a benchmark built on :func:`in_process_hub`."""
    add = parser.add_argument
    add("--runs", type=int, default=3, help="runs, each on a fresh database (3)")
    add("--backend", choices=("sqlite", "postgres"), default="sqlite")
    add("--postgres", default=DEFAULT_POSTGRES_URL, help="database (schema dropped each run)")
    add("--redis-url", default=DEFAULT_REDIS_URL, help="Redis (keys under a random prefix)")
    add("--seed", type=int, default=1, help="random seed of the generated data")
    add("--output", type=Path, default=default_output, help="JSON file")


@contextmanager
def in_process_hub(
    backend: str, *, postgres_url: str, redis_url: str
) -> Iterator[tuple[Any, Any, Any]]:
    """An app built in this process on a fresh database (a SQLite file in a temporary
    directory, or ``postgres_url``'s schema dropped, with the Redis bus), migrated, its
    embedded worker off and its rate limit lifted: ``(settings, db, client)``, the client a
    ``TestClient`` holding an admin key (enter it to run the app's lifespan). For
    benchmarks that time work in their own process; everything is removed afterwards."""
    sys.path.insert(0, str(REPO))  # tests.factories: the API key, as the test suite makes it
    from fastapi.testclient import TestClient
    from tests.factories import ApiKeyFactory

    from revhub.api import create_app
    from revhub.core.db import Database
    from revhub.core.settings import Settings
    from revhub.migrations import upgrade

    unthrottled = {"rate": 10**6, "burst": 10**6}
    with tempfile.TemporaryDirectory(prefix="revhub-bench-") as tmp:
        common: dict[str, Any] = {
            "data_dir": Path(tmp),
            "rate_limit": unthrottled,
            "log_level": "WARNING",
            "capture_process": False,  # what runs is measured in this process
        }
        if backend == "sqlite":
            settings = Settings(embedded_worker=False, **common)
        else:
            reset_postgres(postgres_url)
            secret_names = ("jwt_secret", "pii_key", "audit_key")
            settings = Settings(
                mode="production",
                database_url=postgres_url,
                redis_url=redis_url,
                redis_prefix=f"bench-{secrets.token_hex(4)}:",
                bus="redis",
                **common,
                **{name: secrets.token_urlsafe(32) for name in secret_names},
            )
        upgrade(settings.effective_database_url)
        db = Database.from_url(settings.effective_database_url)
        with db.transaction() as session:
            token = ApiKeyFactory(session).create(role="admin")[1]
        app = create_app(settings, db=db, check_schema=False)
        try:
            yield settings, db, TestClient(app, headers={"X-API-Key": token})
        finally:
            if backend == "postgres":
                delete_redis_keys(redis_url, settings.redis_prefix)
            db.engine.dispose()


# --- realistic sales data -----------------------------------------------------------------

FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Tim", "Barbara", "Dennis", "Frances", "Ken",
    "Hedy", "John", "Katherine", "Guido", "Radia", "Edsger", "Sophie", "Niklaus", "Anita",
    "Bjarne", "Lovisa", "Mateo", "Priya", "Chen", "Yuki", "Fatima", "Olu", "Ingrid", "Pedro",
    "Amara", "Lars", "Zoe", "Rahul", "Elena", "Tomasz", "Mei", "Kwame", "Sara", "Jonas", "Ana",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Berners-Lee", "Liskov", "Ritchie",
    "Allen", "Thompson", "Lamarr", "Backus", "Johnson", "van Rossum", "Perlman", "Dijkstra",
    "Wilson", "Wirth", "Borg", "Stroustrup", "Andersson", "Garcia", "Sharma", "Wang", "Tanaka",
    "Haddad", "Adeyemi", "Larsen", "Silva", "Okafor", "Nilsen", "Martin", "Gupta", "Petrova",
    "Nowak", "Li", "Mensah", "Cohen", "Schmidt", "Costa", "O'Brien", "McDonald", "Müller",
)  # fmt: skip
COMPANY_WORDS = (
    "Nord", "Blue", "Apex", "Quantum", "Cedar", "Summit", "Vertex", "Lumen", "Harbor", "Atlas",
    "Crimson", "Pioneer", "Orbit", "Granite", "Silver", "Aurora", "Beacon", "Cobalt", "Delta",
    "Evergreen", "Falcon", "Helix", "Iris", "Juniper", "Kestrel", "Lynx", "Meridian", "Nimbus",
)  # fmt: skip
COMPANY_KINDS = (
    "Analytics", "Systems", "Labs", "Software", "Logistics", "Health", "Capital", "Foods",
    "Robotics", "Media", "Energy", "Retail", "Networks", "Bank", "Motors", "Studio",
)  # fmt: skip
LEGAL = ("", "", " Inc.", " GmbH", " Ltd", " LLC", " S.A.", " B.V.", " plc", " AG")
TLDS = ("com", "com", "io", "de", "co.uk", "fr", "nl", "com.br", "com.au", "co.jp", "in")
INDUSTRIES = (
    "software", "fintech", "banking", "healthcare", "manufacturing", "retail", "logistics",
    "education", "media", "telecommunications", "Software", "FinTech",
)  # fmt: skip
TITLES = (
    "VP Marketing", "Head of Sales", "Software Engineer", "CTO", "Marketing Manager",
    "Director of Operations", "Chief Revenue Officer", "Data Analyst", "Founder & CEO",
    "Procurement Lead", "  senior product manager ", "IT Administrator",
)  # fmt: skip
COUNTRIES = (  # codes, names and spellings as forms send them; LATAM has no territory
    "US", "US", "United States", "usa", "CA", "GB", "uk", "United Kingdom", "DE", "Germany",
    "FR", "france", "NL", "ES", "IT", "SE", "PL", "IE", "CH", "BR", "MX", "Brazil", "AR",
    "AU", "Japan", "JP", "IN", "India", "SG", "KR", "ZA", "AE", "IL",
)  # fmt: skip
FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com")
SOURCES = ("website", "webinar", "linkedin", "google_ads", "partner", "event", "content")
CAPTURE_TYPES = (("form_submission", 0.6), ("email_signup", 0.25), ("webinar_registration", 0.15))
CAMPAIGNS = (
    ("spring-launch", "Spring launch", "paid_search"),
    ("webinar-q2", "Q2 product webinar", "webinar"),
    ("ebook-guide", "Buyer's guide e-book", "content"),
    ("newsletter", "Monthly newsletter", "email"),
    ("linkedin-abm", "LinkedIn ABM", "paid_social"),
    ("partner-referral", "Partner referrals", "partner"),
)
TERRITORIES: tuple[tuple[str, dict[str, Any]], ...] = (  # name, body; lowest priority first
    ("NA Enterprise", {"regions": ["NA"], "min_employees": 1000, "priority": 10}),
    ("EMEA Financial", {"regions": ["EMEA"], "industries": ["fintech", "banking"], "priority": 20}),
    ("North America", {"regions": ["NA"]}),
    ("EMEA", {"regions": ["EMEA"]}),
    ("APAC", {"regions": ["APAC"]}),
)
REPS_PER_TERRITORY = (3, 2, 4, 3, 2)


@dataclass(frozen=True)
class Company:
    name: str
    domain: str
    industry: str
    employees: int
    country: str


def _companies(rng: random.Random, n: int) -> list[Company]:
    made: dict[str, Company] = {}
    while len(made) < n:
        a, b = rng.choice(COMPANY_WORDS), rng.choice(COMPANY_WORDS)
        kind = rng.choice(COMPANY_KINDS)
        base = a if a == b else f"{a}{b.lower()}"
        domain = f"{base.lower()}-{kind.lower()}.{rng.choice(TLDS)}"
        if domain in made:
            continue
        made[domain] = Company(
            name=f"{base} {kind}{rng.choice(LEGAL)}",
            domain=domain,
            industry=rng.choice(INDUSTRIES),
            employees=int(10 ** rng.uniform(0.7, 4.8)),
            country=rng.choice(COUNTRIES),
        )
    return list(made.values())


def _phones(rng: random.Random) -> dict[str | None, list[str]]:
    """A few valid numbers per country (national format), and international ones."""
    import phonenumbers

    found: dict[str | None, list[str]] = {None: []}
    for region in ("US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "BR", "AU", "JP", "IN"):
        example = phonenumbers.example_number(region)
        if example is None:
            continue
        digits = str(example.national_number)
        numbers = []
        for _ in range(40):
            candidate = digits[:-3] + f"{rng.randrange(1000):03d}"
            parsed = phonenumbers.parse(candidate, region)
            if phonenumbers.is_valid_number(parsed):
                numbers.append(candidate)
                found[None].append(
                    phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                )
        found[region] = numbers or [digits]
    return found


class LeadFactory:
    """Varied LeadCreate bodies, reproducible from ``seed``.

    Mostly new people (unique e-mails at ~``companies`` companies, some on free mailboxes,
    names and e-mails in odd cases); ``repeat`` of the calls send again a lead already
    answered 201 (same e-mail, a field changed: the "updated" path); ``merge`` of them do so
    with an anonymous visitor id seeded earlier (two profiles become one: "merged"); new
    leads carry a seeded visitor id (``identified``: the form fill names an anonymous
    visitor) with probability ``identify`` and a fresh anonymous id with ``fresh_anonymous``.
    Phone, country, industry, job title, consent and campaign are present on most leads.
    """

    def __init__(
        self,
        seed: int,
        *,
        campaigns: Sequence[str],
        visitors: Sequence[str] = (),
        companies: int = 2000,
        repeat: float = 0.10,
        merge: float = 0.02,
        identify: float = 0.15,
        fresh_anonymous: float = 0.10,
    ) -> None:
        self.rng = random.Random(seed)
        self.companies = _companies(self.rng, companies)
        self.phones = _phones(self.rng)
        self.campaigns = list(campaigns)
        self.visitors = list(visitors)
        self.repeat, self.merge = repeat, merge
        self.identify, self.fresh_anonymous = identify, fresh_anonymous
        self.answered: list[dict[str, Any]] = []  # bodies answered 201, for repeats
        self.serial = 0
        self.token = secrets.token_hex(3)  # e-mails unique across runs on one database

    def confirm(self, body: dict[str, Any]) -> None:
        """``body`` was answered 201: a later call may send that person again."""
        self.answered.append(body)

    def next(self) -> tuple[str, dict[str, Any]]:
        """(kind, body): kind is "new", "repeat" or "merge" (what the body is meant to hit)."""
        rng = self.rng
        roll = rng.random()
        if self.answered and roll < self.merge and self.visitors:
            body = dict(rng.choice(self.answered), anonymous_id=self.visitors.pop())
            return "merge", self._touch(body)
        if self.answered and roll < self.repeat:
            body = dict(rng.choice(self.answered))
            body.pop("anonymous_id", None)
            return "repeat", self._touch(body)
        return "new", self._new()

    def _touch(self, body: dict[str, Any]) -> dict[str, Any]:
        """A repeat submission: same person, something new about them."""
        rng = self.rng
        body["job_title"] = rng.choice(TITLES)
        body["capture_type"] = self._capture_type()
        body["captured_at"] = datetime.now(UTC).isoformat()
        if rng.random() < 0.5:
            body["campaign"] = rng.choice(self.campaigns)
        return body

    def _capture_type(self) -> str:
        roll, acc = self.rng.random(), 0.0
        for name, share in CAPTURE_TYPES:
            acc += share
            if roll < acc:
                return name
        return CAPTURE_TYPES[0][0]

    def _new(self) -> dict[str, Any]:
        rng = self.rng
        self.serial += 1
        company = rng.choice(self.companies)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = re.sub(r"[^a-z0-9.]", "", f"{first}.{last}".lower())
        free = rng.random() < 0.15
        domain = rng.choice(FREE_MAIL) if free else company.domain
        email = f"{local}.{self.token}{self.serial}@{domain}"
        if rng.random() < 0.1:
            email = f" {email.title()} "  # typed sloppily: trimmed and lower-cased
        if rng.random() < 0.05:
            first, last = first.upper(), last.upper()
        body: dict[str, Any] = {
            "capture_type": self._capture_type(),
            "email": email,
            "first_name": first,
            "company": company.name,
            "captured_at": datetime.now(UTC).isoformat(),
        }
        if rng.random() < 0.9:
            body["last_name"] = last
        if rng.random() < 0.8:
            body["job_title"] = rng.choice(TITLES)
        if rng.random() < 0.85:
            body["country"] = company.country if rng.random() < 0.8 else rng.choice(COUNTRIES)
        if rng.random() < 0.6:
            body["phone"] = self._phone(body.get("country"))
        if rng.random() < 0.7:
            body["industry"] = company.industry
            body["employee_count"] = company.employees
        if free or rng.random() < 0.3:
            body["website"] = rng.choice(
                (f"https://www.{company.domain}/", company.domain, f"http://{company.domain}")
            )
        if rng.random() < 0.85:
            body["lead_source"] = rng.choice(SOURCES)
        if rng.random() < 0.7:
            body["campaign"] = rng.choice(self.campaigns)
        if rng.random() < 0.6:
            body["consent"] = {
                "email_marketing": rng.random() < 0.7,
                "tracking": rng.random() < 0.8,
            }
        roll = rng.random()
        if roll < self.identify and self.visitors:
            body["anonymous_id"] = self.visitors.pop()
        elif roll < self.identify + self.fresh_anonymous:
            body["anonymous_id"] = f"anon-{secrets.token_hex(8)}"
        return body

    def _phone(self, country: str | None) -> str:
        rng = self.rng
        if rng.random() < 0.05:
            return rng.choice(("12345", "call me", "+1 555"))  # invalid: dropped, reported
        region = _region(country)
        if region in self.phones and rng.random() < 0.7:
            return rng.choice(self.phones[region])
        return rng.choice(self.phones[None])


def _region(country: str | None) -> str | None:
    if not country:
        return None
    names = {"united states": "US", "usa": "US", "united kingdom": "GB", "uk": "GB"}
    names |= {"germany": "DE", "france": "FR", "brazil": "BR", "japan": "JP", "india": "IN"}
    key = country.strip().lower()
    return names.get(key, key.upper() if len(key) == 2 else None)


TOUCH_KINDS = (
    ("email_open", "email", 0.45),
    ("email_click", "email", 0.25),
    ("web_session", "web", 0.2),
    ("content_download", "content", 0.1),
)


def touchpoint(rng: random.Random, campaigns: Sequence[str], **person: str) -> dict[str, Any]:
    """One TouchpointCreate body for ``person`` (``email=`` / ``anonymous_id=``), within the
    last 30 days."""
    roll, acc = rng.random(), 0.0
    kind, channel = TOUCH_KINDS[0][:2]
    for k, c, share in TOUCH_KINDS:
        acc += share
        if roll < acc:
            kind, channel = k, c
            break
    when = datetime.now(UTC) - timedelta(seconds=rng.uniform(0, 30 * 86_400))
    body: dict[str, Any] = {
        **person,
        "campaign": rng.choice(campaigns),
        "channel": channel,
        "kind": kind,
        "occurred_at": when.isoformat(),
    }
    if kind == "content_download":
        body["content_id"] = f"asset-{rng.randrange(40)}"
    return body


# --- seeding a hub through its API --------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    campaigns: list[str]
    territories: int
    reps: int
    visitors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def post_json(client: Any, path: str, body: dict[str, Any], expect: int) -> Any:
    """POST ``body`` to the sales ``path``; its JSON answer, or HubError if not ``expect``."""
    response = client.post(f"{SALES}{path}", json=body)
    if response.status_code != expect:
        raise HubError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def seed_team(client: Any) -> int:
    """The campaigns, and the territories with their reps, through ``client`` (an
    ``httpx.Client`` holding the base URL and the API key); the number of reps."""
    for key, name, channel in CAMPAIGNS:
        post_json(client, "/campaigns", {"key": key, "name": name, "channel": channel}, 201)
    reps = 0
    for (name, body), count in zip(TERRITORIES, REPS_PER_TERRITORY, strict=True):
        territory = post_json(client, "/territories", {"name": name, **body}, 201)
        for i in range(count):
            rep = {
                "name": f"{name} rep {i + 1}",
                "email": f"rep{i + 1}.{territory['id'][-12:]}@bench.example",
                "territory_id": territory["id"],
                "capacity": 1 + i % 3,
            }
            post_json(client, "/reps", rep, 201)
            reps += 1
    return reps


def seed_sales(hub: SalesHub, *, visitors: int = 0, seed: int = 7) -> Seeded:
    """Territories with reps (so assignment really runs), campaigns, and ``visitors``
    anonymous visitors with a web session or two each (for the "identified" and "merged"
    paths of lead capture)."""
    import httpx

    started = time.perf_counter()
    rng = random.Random(seed)
    headers = {"X-API-Key": hub.api_key}
    with httpx.Client(base_url=hub.base_url, headers=headers, timeout=600.0) as client:
        reps = seed_team(client)
        ids = [f"visitor-{secrets.token_hex(8)}" for _ in range(visitors)]
        keys = [k for k, _, _ in CAMPAIGNS]
        items = []
        for visitor in ids:
            items.append(touchpoint(rng, keys, anonymous_id=visitor) | {"kind": "web_session"})
            if rng.random() < 0.5:
                items.append(touchpoint(rng, keys, anonymous_id=visitor))
        for start in range(0, len(items), 1000):
            result = post_json(
                client, "/touchpoints/bulk", {"touchpoints": items[start : start + 1000]}, 200
            )
            if result["rejected"]:
                raise HubError(f"seeding visitors: {result['rejected']} touchpoints rejected")
    return Seeded(
        [k for k, _, _ in CAMPAIGNS],
        len(TERRITORIES),
        reps,
        ids,
        round(time.perf_counter() - started, 2),
    )


@contextmanager
def capture_bench(
    backend: str, *, postgres_url: str, redis_url: str, size: int
) -> Iterator[tuple[Callable[[list[Any]], Any], Callable[[], list[Any]]]]:
    """The lead-capture child's work in this process, on a fresh hub (``in_process_hub``)
    seeded with :func:`seed_team`: ``(capture, jobs)``. ``jobs()`` makes a batch of ``size``
    new leads, each with its audit entry; ``capture(batch)`` runs
    ``sales.capture_process.capture_jobs`` on it, one transaction. The garbage collector
    is as the app's start-up left it (the API process's settings, not the child's)."""
    from revhub.contacts.pii import pii_for
    from revhub.core.audit import service as audit
    from revhub.sales import schemas as s
    from revhub.sales.capture_process import Job, capture_jobs

    with in_process_hub(backend, postgres_url=postgres_url, redis_url=redis_url) as (
        settings,
        db,
        client,
    ):
        with client:
            seed_team(client)
        pii = pii_for(settings)
        factory = LeadFactory(1, campaigns=[key for key, _, _ in CAMPAIGNS])

        def jobs() -> list[Any]:
            made = []
            for _ in range(size):
                body = factory.next()[1]
                factory.confirm(body)
                entry = audit.AuditEvent(
                    occurred_at=datetime.now(UTC), actor="bench", action="lead.capture",
                    resource_type="lead", outcome="success",
                )  # fmt: skip
                made.append(Job(s.LeadCreate.model_validate(body), entry, None))
            return made

        yield (lambda batch: capture_jobs(db, pii, b"k" * 32, batch)), jobs


# --- CPU accounting (Linux /proc) ---------------------------------------------------------


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    user, nice, system, _idle, _iowait, irq, softirq = Path("/proc/stat").read_text().split()[1:8]
    return sum(int(v) for v in (user, nice, system, irq, softirq)) / _ticks()


def _proc_stat(pid: int | str) -> tuple[str, float]:
    """(command name, CPU seconds used so far, all threads) of a process."""
    head, _, tail = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    fields = tail.split()
    return head.partition("(")[2], (int(fields[11]) + int(fields[12])) / _ticks()


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (``serve --workers N``)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += _proc_stat(current)[1]
        for task in Path(f"/proc/{current}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def _servers_cpu_s() -> float:
    """CPU seconds of every PostgreSQL and Redis server process."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, seconds = _proc_stat(entry.name)
            except (OSError, ValueError, IndexError):
                continue
            if name.startswith(("postgres", "redis-server")):
                total += seconds
    return total


class CpuMeter:
    """CPUs busy between :meth:`start` and :meth:`stop` (1.0 = one CPU throughout): this
    client, the hub's server, its worker (PostgreSQL only; on SQLite the worker is a child
    of the server and counted with it, as is the lead-capture process), PostgreSQL + Redis,
    and anything else."""

    def __init__(self, hub: SalesHub) -> None:
        self.pids = {"server": hub.server_pid, "worker": hub.worker_pid}
        self.before: tuple[float, ...] | None = None

    def _read(self) -> tuple[float, ...] | None:
        try:
            procs = [_tree_cpu_s(p) if p else 0.0 for p in self.pids.values()]
            return (_machine_busy_s(), time.perf_counter(), time.process_time(), *procs,
                    _servers_cpu_s())  # fmt: skip
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float] | None:
        after = self._read()
        if self.before is None or after is None:
            return None
        d = [a - b for a, b in zip(after, self.before, strict=True)]
        wall = d[1]
        machine, client, server, worker, servers = d[0], d[2], d[3], d[4], d[5]
        other = max(0.0, machine - client - server - worker - servers)
        use = {"client": client, "server": server, "worker": worker, "pg_redis": servers}
        return {k: round(v / wall, 2) for k, v in (use | {"other": other}).items()}


# --- figures and the report ---------------------------------------------------------------


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in ms (linear interpolation, as numpy's default); None without data."""
    ms = [s * 1000.0 for s in seconds]
    if len(ms) < 2:
        v = round(ms[0], 3) if ms else None
        return {"p50_ms": v, "p95_ms": v, "p99_ms": v, "max_ms": v}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 3),
        "p95_ms": round(cuts[94], 3),
        "p99_ms": round(cuts[98], 3),
        "max_ms": round(max(ms), 3),
    }


def median_of(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, float | None]:
    """The median of each key over the rows that have a figure for it (None if none has)."""
    found = {k: [r[k] for r in rows if r.get(k) is not None] for k in keys}
    return {k: round(statistics.median(v), 3) if v else None for k, v in found.items()}


def ms_cell(value: float | None, digits: int = 1) -> str:
    """A figure for a table: '-' where there is none (e.g. no request succeeded)."""
    return "-" if value is None else f"{value:.{digits}f}"


def postgres_version(url: str) -> dict[str, str] | None:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return {
                    "postgresql": str(conn.scalar(text("SHOW server_version"))),
                    "postgresql_synchronous_commit": str(
                        conn.scalar(text("SHOW synchronous_commit"))
                    ),
                }
        finally:
            engine.dispose()
    except Exception:  # informational only
        return None


def environment(
    started: datetime, backends: Sequence[str], postgres_url: str, src: Path | None = None
) -> dict[str, Any]:
    dirty = git("status", "--porcelain", "--untracked-files=no")
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": None if dirty is None else bool(dirty),
        "timestamp_utc": started.isoformat(timespec="seconds"),
        "revhub_src": str(src) if src else "installed (the working tree, if editable)",
    }
    if "postgres" in backends:
        info |= postgres_version(postgres_url) or {}
    return info


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


@contextmanager
def py_spy(pids: dict[str, int | None], out_dir: Path | None, label: str) -> Iterator[None]:
    """With ``out_dir``, record the given processes with py-spy (collapsed stacks, one file
    each) for as long as the block runs; without, do nothing."""
    if out_dir is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("py-spy")
    procs = []
    for name, pid in pids.items():
        if pid is None:
            continue
        path = out_dir / f"{label}-{name}.txt"
        command = [str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                   "--threads", "--subprocesses", "--output", str(path)]  # fmt: skip
        procs.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def add_hub_options(parser: argparse.ArgumentParser, *, default_output: Path) -> None:
    """The options of ``lead_capture.py`` and ``bulk_ingest.py`` that choose and start the
    hub (backends, servers, data seed, output, profiling, code under test, idle wait)."""
    add = parser.add_argument
    add(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="sqlite and/or postgres (repeatable; default both)",
    )
    add("--postgres", default=DEFAULT_POSTGRES_URL, help="database (schema dropped each run)")
    add("--redis-url", default=DEFAULT_REDIS_URL, help="Redis (keys under a random prefix)")
    add("--seed", type=int, default=1, help="random seed of the generated data")
    add(
        "--api-processes",
        type=int,
        default=1,
        help="PostgreSQL: run `revhub serve --workers N` (1); the figures name N",
    )
    add("--output", type=Path, default=default_output, help="JSON file")
    add("--py-spy", type=Path, metavar="DIR", help="record py-spy profiles (run 1) into DIR")
    add(
        "--src",
        type=Path,
        metavar="DIR",
        help="import revhub in the hub from this directory, e.g. a snapshot made with "
        "`git archive HEAD src | tar -x -C /tmp/snap` (then /tmp/snap/src)",
    )
    add(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many s for the machine to go idle (60; 0: no)",
    )


def wait_quiet(limit_s: float = 60.0, busy_below: float = 0.3, window_s: float = 2.0) -> float:
    """Wait (at most ``limit_s``) until the whole machine keeps fewer than ``busy_below``
    CPUs busy over ``window_s``: another developer's test run would skew the figures.
    Returns the last figure seen (CPUs busy)."""
    deadline = time.monotonic() + limit_s
    while True:
        before, started = _machine_busy_s(), time.perf_counter()
        time.sleep(window_s)
        busy = (_machine_busy_s() - before) / (time.perf_counter() - started)
        if busy < busy_below or time.monotonic() >= deadline:
            return round(busy, 2)


OTHER_CPU_WARN = 0.25  # CPUs kept busy by unrelated processes before a run is flagged
