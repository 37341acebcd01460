"""The ``revhub`` command line: run the hub, migrate it, manage keys, check the audit trail."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from revhub.core.audit import service as audit
from revhub.core.auth import service as auth
from revhub.core.auth.schemas import ApiKeyCreate
from revhub.core.auth.scopes import ROLE_SCOPES, Role
from revhub.core.db import Database, utcnow
from revhub.core.errors import ConfigurationError, InvalidInput, RevHubError
from revhub.core.events import service as events
from revhub.core.jobs import service as jobs
from revhub.core.jobs.models import JobRun
from revhub.core.settings import Settings, load_settings
from revhub.crm.connectors.base import ConnectorError
from revhub.crm.models import SyncRun as SyncRunRow

app = typer.Typer(
    help="RevHub: the integration hub for revenue data. Configure with REVHUB_* variables "
    "(see README); with none set, everything lives in ./.revhub (SQLite, local bus).",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
dead_app = typer.Typer(
    help="Dead letters: event deliveries that failed their last attempt.", no_args_is_help=True
)
app.add_typer(dead_app, name="dead-letters")
jobs_app = typer.Typer(help="Scheduled batch jobs: list them, run one now.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
crm_app = typer.Typer(
    help="CRM connections and sync: add, list, test, sync, runs, reconcile.", no_args_is_help=True
)
app.add_typer(crm_app, name="crm")

out = Console()
err = Console(stderr=True)


@contextmanager
def _hub(*, check_schema: bool = True) -> Iterator[tuple[Settings, Database]]:
    """Settings and an up-to-date database for a command (embedded mode migrates its own
    file; production mode says to run ``revhub migrate``), errors turned into advice."""
    from revhub.api import ensure_schema

    try:
        settings = load_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database.from_url(settings.effective_database_url)
        if check_schema:
            ensure_schema(settings, db)
        yield settings, db
    except ConfigurationError as exc:
        err.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except RevHubError as exc:
        err.print(f"[red]{exc.title}:[/red] {exc.detail}")
        raise typer.Exit(1) from exc


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _audit_cli(
    settings: Settings,
    session: Session,
    action: str,
    resource_type: str,
    resource_id: str,
    outcome: str = "success",
) -> None:
    """CLI writes are audited like API writes; the actor is the operating-system user."""
    event = audit.AuditEvent(
        occurred_at=utcnow(),
        actor=_cli_actor(),
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        role="admin",
    )
    audit.record(session, event=event, key=settings.secrets["audit_key"])


@app.command()
def migrate() -> None:
    """Upgrade the database schema to this version of RevHub (safe to run repeatedly)."""
    from revhub.migrations import upgrade

    with _hub(check_schema=False) as (settings, _db):
        upgrade(settings.effective_database_url)
        out.print(f"[green]Schema up to date[/green] on {_safe_url(settings)}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default REVHUB_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default REVHUB_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="API processes (production mode).")] = 1,
) -> None:
    """Run the HTTP API. Embedded mode migrates its own SQLite file; production mode refuses
    an out-of-date schema and tells you to run `revhub migrate`."""
    import uvicorn

    with _hub() as (settings, db):
        db.engine.dispose()
        _ = settings.secrets
        out.print(
            f"RevHub on http://{host or settings.host}:{port or settings.port} "
            f"({settings.mode}, {_safe_url(settings)}); docs at /docs"
        )
        uvicorn.run(
            "revhub.api:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )


@app.command()
def demo(
    people: Annotated[int, typer.Option(min=50, max=50_000, help="People to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Same seed, same company.")] = 7,
    then_serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after.")] = True,
    port: Annotated[int | None, typer.Option(help="Port (default REVHUB_PORT).")] = None,
) -> None:
    """Fill the hub with a seeded synthetic company (12 months, ~40 campaigns, thousands of
    people, touchpoints and deals) through the same services the API uses, print an admin
    API key, then serve. Run it on a fresh data directory; a second run only serves."""
    from rich.progress import Progress

    from revhub.contacts.pii import pii_for
    from revhub.core.memory import tune_garbage_collector
    from revhub.demo import DemoCompany, already_loaded

    with _hub() as (settings, db):
        with db.transaction() as session:
            loaded = already_loaded(session)
        if loaded:
            out.print("Demo data is already here; not adding it twice.")
        else:
            company = DemoCompany(pii_for(settings), seed=seed, people=people)
            tune_garbage_collector()
            with Progress(console=out) as bar:
                task = bar.add_task("12 months of marketing", total=365)
                report = company.run(db, progress=lambda n: bar.advance(task, n))
            out.print(
                f"[green]Demo company ready[/green]: {report.campaigns} campaigns, "
                f"{report.leads} leads, {report.touchpoints} touchpoints, "
                f"{report.mqls} MQLs worked by sales, {report.opportunities} deals "
                f"({report.won} won)."
            )
        with db.transaction() as session:
            key_in = ApiKeyCreate(name=f"demo-{uuid.uuid4().hex[:6]}", role=Role.ADMIN)
            key, token = auth.create_key(
                session, key_in=key_in, created_by=_cli_actor(), now=utcnow()
            )
            _audit_cli(settings, session, "cli demo", "api_keys", str(key.id))
        out.print(f"Admin API key for the demo (shown once): [bold]{token}[/bold]")
        db.engine.dispose()
    if then_serve:
        serve(host=None, port=port, workers=1)


@app.command()
def worker() -> None:
    """Run the relay, the consumers and the scheduler until SIGTERM or Ctrl-C, then stop
    cleanly: each loop finishes the event in hand, nothing is lost or applied twice."""
    import signal
    import threading

    from revhub.core.interpreter import share_between_threads
    from revhub.core.memory import tune_garbage_collector
    from revhub.core.observability import configure_logging
    from revhub.worker import build_worker

    with _hub() as (settings, db):
        configure_logging(settings.log_level, settings.log_format)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        the_worker = build_worker(settings, db)
        tune_garbage_collector()
        share_between_threads()
        out.print(f"RevHub worker {the_worker.name} ({settings.bus} bus); Ctrl-C stops it.")
        the_worker.run(stop)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what will use the key.")],
    role: Annotated[Role, typer.Option(help="Grants this role's scopes.")],
    expires_in_days: Annotated[
        int, typer.Option(help="Days until it expires; 0 for never.", min=0, max=3650)
    ] = 90,
) -> None:
    """Create an API key and print it once; it is stored only as a hash."""
    with _hub() as (settings, db), db.transaction() as session:
        key_in = ApiKeyCreate(name=name, role=role, expires_in_days=expires_in_days or None)
        key, token = auth.create_key(session, key_in=key_in, created_by=_cli_actor(), now=utcnow())
        _audit_cli(settings, session, "cli keys create", "keys", str(key.id))
    out.print(f"[bold]API key[/bold] (shown once, store it now): {token}")
    out.print(f"client_id (OAuth 2.0): {key.id}")
    out.print(f"role: {key.role}  scopes: {' '.join(sorted(ROLE_SCOPES[role]))}")
    out.print(f"expires: {key.expires_at.isoformat() if key.expires_at else 'never'}")


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List API keys (never the keys themselves)."""
    with _hub() as (_settings, db), db.transaction() as session:
        keys = auth.list_keys(session, include_revoked=all_keys, after=None, limit=10_000)
        table = Table("id", "name", "role", "prefix", "created", "expires", "last used", "revoked")
        for k in keys:
            table.add_row(
                str(k.id),
                k.name,
                k.role,
                k.prefix,
                _when(k.created_at),
                _when(k.expires_at),
                _when(k.last_used_at),
                _when(k.revoked_at),
            )
    out.print(table)


@keys_app.command("rotate-pii")
def keys_rotate_pii() -> None:
    """Re-seal everything sealed with keys derived from the PII secret with the current
    REVHUB_PII_KEY, and recompute blind indexes: contacts and identities, the CRM merge
    state's personal values, CRM credentials, webhook signing secrets.

    Put the old secret in REVHUB_PII_PREVIOUS_KEYS (a JSON list), set the new one as
    REVHUB_PII_KEY, run this, then drop the old secret. One transaction: it completes or
    changes nothing."""
    from rich.progress import Progress

    from revhub.contacts.pii import pii_for
    from revhub.contacts.rotation import rotate_pii, rows_to_rotate
    from revhub.core.crypto import Resealed
    from revhub.core.webhooks.jobs import secret_box
    from revhub.core.webhooks.service import reseal_secrets
    from revhub.crm.personal import reseal_merge_state, rows_to_reseal
    from revhub.crm.service import credentials_box, reseal_credentials

    with _hub() as (settings, db), db.transaction() as session:
        pii = pii_for(settings)
        with Progress(console=out) as bar:
            total = rows_to_rotate(session) + rows_to_reseal(session)
            task = bar.add_task("re-sealing", total=total)
            report = rotate_pii(session, pii, progress=lambda n: bar.advance(task, n))
            others = Resealed()
            reseal_merge_state(session, pii, others, lambda n: bar.advance(task, n))
            reseal_credentials(session, credentials_box(settings), others)
            reseal_secrets(session, secret_box(settings), others)
        unreadable = report.unreadable + others.unreadable
        if unreadable:
            session.rollback()
            for line in unreadable[:20]:
                err.print(f"[red]unreadable[/red] {line}")
            err.print(
                f"[red]{len(unreadable)} values open with no configured key; nothing "
                "was changed.[/red] Add the secret that sealed them to REVHUB_PII_PREVIOUS_KEYS "
                "and run again."
            )
            raise typer.Exit(1)
        _audit_cli(settings, session, "cli keys rotate-pii", "contacts", "pii")
    out.print(
        f"[green]PII re-keyed[/green]: {report.contacts_scanned} contacts and "
        f"{report.identities_scanned} identities scanned, "
        f"{report.values_resealed + others.resealed} values re-sealed, "
        f"{report.indexes_recomputed} blind indexes recomputed. You can now remove "
        "the old secret from REVHUB_PII_PREVIOUS_KEYS."
    )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[uuid.UUID, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key at once."""
    with _hub() as (settings, db), db.transaction() as session:
        key = auth.revoke_key(session, key_id=key_id, now=utcnow())
        _audit_cli(settings, session, "cli keys revoke", "keys", str(key.id))
    out.print(f"Revoked {key.name} ({key.id}).")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit chain; exit 1 and list each break if any row was edited or deleted."""
    with _hub() as (settings, db), db.transaction() as session:
        result = audit.verify(session, key=settings.secrets["audit_key"])
    if result.ok:
        out.print(f"[green]Audit trail intact[/green]: {result.entries_checked} entries verified.")
        return
    err.print(
        f"[red]Audit trail altered[/red]: {len(result.problems)} problem(s) in "
        f"{result.entries_checked} entries."
    )
    for p in result.problems:
        err.print(f"  entry {p.seq}: {p.problem}")
    raise typer.Exit(1)


@dead_app.command("list")
def dead_letters_list(
    status: Annotated[events.Status, typer.Option(help="Which ones.")] = events.Status.OPEN,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
) -> None:
    """List dead letters, newest first."""
    with _hub() as (_settings, db), db.transaction() as session:
        letters = events.list_dead_letters(
            session,
            status=status,
            consumer=consumer,
            after=None,
            limit=10_000,
        )
        table = Table("id", "consumer", "event", "type", "attempts", "status", "since", "error")
        for d in letters:
            table.add_row(
                str(d.id),
                d.consumer,
                str(d.event_id),
                d.event.get("event_type", ""),
                str(d.attempts),
                d.status,
                _when(d.created_at),
                d.error[:60],
            )
    out.print(table)


@dead_app.command("show")
def dead_letters_show(dead_letter_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Print one dead letter: its event and its last error."""
    with _hub() as (_settings, db), db.transaction() as session:
        letter = events.get_dead_letter(session, dead_letter_id=dead_letter_id)
        out.print_json(
            data={
                "id": str(letter.id),
                "consumer": letter.consumer,
                "status": letter.status,
                "attempts": letter.attempts,
                "error": letter.error,
                "event": letter.event,
            }
        )


@dead_app.command("replay")
def dead_letters_replay(dead_letter_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Apply the event to its consumer again, now; exit 1 if it fails again."""
    from revhub.worker import consumer_registry

    with _hub() as (settings, db):
        with db.transaction() as session:
            events.request_replay(session, dead_letter_id=dead_letter_id)
            _audit_cli(settings, session, "cli dead-letters replay", "events", str(dead_letter_id))
        events.replay_requested(
            db, registry=consumer_registry(settings), policy_for=settings.policy_for
        )
        with db.transaction() as session:
            letter = events.get_dead_letter(session, dead_letter_id=dead_letter_id)
    if letter.status != "replayed":
        err.print(f"[red]Replay failed[/red] ({letter.attempts} attempts): {letter.error}")
        raise typer.Exit(1)
    out.print(f"[green]Replayed[/green] {letter.event_id} to {letter.consumer}.")


@dead_app.command("discard")
def dead_letters_discard(dead_letter_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Give up on a dead letter (it stays listed as discarded)."""
    with _hub() as (settings, db), db.transaction() as session:
        letter = events.discard(session, dead_letter_id=dead_letter_id)
        _audit_cli(settings, session, "cli dead-letters discard", "events", str(letter.id))
    out.print(f"Discarded {letter.id}.")


@jobs_app.command("list")
def jobs_list() -> None:
    """List the jobs: schedule (cron, UTC), next run, handler status, last run."""
    from revhub.worker import consumer_registry, job_registry

    with _hub() as (settings, db), db.transaction() as session:
        registry = job_registry(settings, consumer_registry(settings))
        table = Table("job", "schedule (UTC)", "next run", "status", "last run", "outcome", "rows")
        for view in jobs.list_jobs(session, registry=registry, now=utcnow()):
            last = view.last_run
            table.add_row(
                view.job.name,
                view.job.schedule or "off",
                _when(view.next_run_at),
                view.status,
                _when(last.created_at) if last else "-",
                _outcome(last),
                str(last.rows_processed) if last and last.rows_processed is not None else "-",
            )
    out.print(table)


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="The job (see `revhub jobs list`).")],
) -> None:
    """Run a job now, in this process, with a progress bar; exit 1 if the job is unknown,
    has no handler yet, or fails."""
    import os
    import socket

    from rich.progress import Progress

    from revhub.core.observability import configure_logging
    from revhub.worker import consumer_registry, job_registry

    with _hub() as (settings, db):
        configure_logging(settings.log_level, settings.log_format)
        registry = job_registry(settings, consumer_registry(settings))
        try:
            jobs.runnable(registry, name)
        except (jobs.UnknownJob, jobs.NoHandlerYet) as exc:
            err.print(f"[red]{exc.detail}[/red]")
            raise typer.Exit(1) from exc
        with Progress(console=out) as bar:
            task = bar.add_task(name, total=None)
            run = jobs.run_by_hand(
                db,
                registry=registry,
                name=name,
                actor=_cli_actor(),
                worker=f"cli:{socket.gethostname()}:{os.getpid()}",
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            if run.status == "succeeded":  # a full bar, even if the job reported no total
                steps = next(t for t in bar.tasks if t.id == task).total or 1
                bar.update(task, total=steps, completed=steps)
        with db.transaction() as session:
            outcome = "success" if run.status == "succeeded" else "failed"
            _audit_cli(settings, session, "cli jobs run", "jobs", str(run.id), outcome)
    seconds = _seconds(run)
    if run.status != "succeeded":
        err.print(f"[red]{name} failed[/red] after {seconds:.2f} s (run {run.id}): {run.error}")
        raise typer.Exit(1)
    out.print(
        f"[green]{name} succeeded[/green]: {run.rows_processed} rows processed in "
        f"{seconds:.2f} s (run {run.id})."
    )


def _seconds(run: JobRun) -> float:
    if run.started_at is None or run.finished_at is None:
        return 0.0
    return (run.finished_at - run.started_at).total_seconds()


def _outcome(run: JobRun | None) -> str:
    if run is None:
        return "-"
    return f"{run.status} (stale?)" if run.stale else run.status


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else "-"


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.effective_database_url).render_as_string(hide_password=True)


CRM_CREDENTIALS_ENV = "REVHUB_CRM_CREDENTIALS"


@crm_app.command("add")
def crm_add(
    name: Annotated[str, typer.Argument(help="A name for this CRM account, e.g. hubspot-eu.")],
    crm: Annotated[str, typer.Option(help="The vendor: salesforce, hubspot or pipedrive.")],
    base_url: Annotated[
        str | None, typer.Option(help="The API's address, if not the vendor's public one.")
    ] = None,
    currency: Annotated[
        str, typer.Option(help="ISO 4217 code of deal amounts the CRM sends without one.")
    ] = "USD",
) -> None:
    """Store a CRM connection. The credentials come as JSON in REVHUB_CRM_CREDENTIALS (kept
    out of shell history), e.g. '{"access_token": "pat-…"}', and are stored sealed."""
    from revhub.crm import service as crm_service

    raw = os.environ.get(CRM_CREDENTIALS_ENV)
    if not raw:
        err.print(f"[red]Set {CRM_CREDENTIALS_ENV}[/red] to the credentials as JSON, then retry.")
        raise typer.Exit(2)
    try:
        credentials = json.loads(raw)
    except ValueError as exc:
        err.print(f"[red]{CRM_CREDENTIALS_ENV} is not JSON:[/red] {exc}")
        raise typer.Exit(2) from exc
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        err.print(f"[red]--currency[/red]: {currency!r} is not an ISO 4217 code such as EUR.")
        raise typer.Exit(2)
    with _hub() as (settings, db), db.transaction() as session:
        box = crm_service.credentials_box(settings)
        try:
            connection = crm_service.add_connection(
                session,
                box,
                name=name,
                crm=crm,
                credentials=credentials,
                base_url=base_url,
                currency=currency,
            )
        except InvalidInput as exc:
            for error in exc.errors:
                err.print(f"[red]{error.field}[/red]: {error.message}")
            raise typer.Exit(2) from exc
        _audit_cli(settings, session, "cli crm add", "crm", str(connection.id))
    out.print(f"CRM connection {name!r} ({crm}) stored; check it with `revhub crm test {name}`.")


@crm_app.command("list")
def crm_list() -> None:
    """List CRM connections (never their credentials)."""
    from revhub.crm import service as crm_service

    with _hub() as (_settings, db), db.transaction() as session:
        table = Table("name", "crm", "api", "active", "created")
        for c in crm_service.list_connections(session):
            api = c.settings.get("base_url") or "vendor default"
            table.add_row(c.name, c.crm, api, str(c.active), c.created_at.isoformat())
    out.print(table)


@crm_app.command("test")
def crm_test(name: Annotated[str, typer.Argument(help="The connection's name.")]) -> None:
    """Check a connection's credentials and that every mapped CRM field exists."""
    from revhub.crm import service as crm_service

    with _hub() as (settings, db):
        mappings = crm_service.mappings_for(settings)
        with db.reading() as session:
            connection = crm_service.get_connection(session, name=name)
            session.expunge(connection)
        box = crm_service.credentials_box(settings)
        try:
            check = crm_service.check(connection, box, mappings, db)
        except ConnectorError as exc:
            err.print(f"[red]{name}: the CRM did not answer the check:[/red] {exc}")
            raise typer.Exit(1) from exc
    report = check.report
    if not report.authenticated:
        err.print(f"[red]{name}: credentials refused[/red] ({report.detail}); store new ones.")
        raise typer.Exit(1)
    for kind, missing in report.missing_fields.items():
        err.print(
            f"[red]{name}: {kind} lacks {', '.join(missing)}[/red]: create these fields in "
            f"{check.crm} or change the mapping."
        )
    if not check.ok:
        raise typer.Exit(1)
    out.print(f"{name} ({check.crm}): credentials work and every mapped field exists.")


@crm_app.command("sync")
def crm_sync(
    name: Annotated[str, typer.Argument(help="The connection's name.")],
    full: Annotated[
        bool, typer.Option("--full", help="Every record, not only what changed since last run.")
    ] = False,
) -> None:
    """Sync a connection now, in this process: push contacts, pull contacts, pull deals,
    push deals, each with a progress bar. Exit 1 if a run failed or left failed rows (they
    are retried on the next run)."""
    from rich.progress import Progress

    from revhub.contacts.pii import pii_for
    from revhub.core.observability import configure_logging
    from revhub.crm import service as crm_service
    from revhub.crm.push import Progress as StepProgress
    from revhub.crm.sync import sync_connection

    with _hub() as (settings, db):
        configure_logging(settings.log_level, settings.log_format)
        with Progress(console=out) as bar:

            def progress_for(step: str) -> StepProgress:
                task = bar.add_task(f"{name}: {step}", total=None)
                return lambda done, total: bar.update(task, completed=done, total=total or None)

            try:
                runs = sync_connection(
                    db,
                    pii_for(settings),
                    crm_service.credentials_box(settings),
                    crm_service.mappings_for(settings),
                    name=name,
                    full=full,
                    trigger="cli",
                    progress_for=progress_for,
                )
            except RevHubError as exc:
                hint = " (see `revhub crm list`)" if exc.status == 404 else ""
                err.print(f"[red]{exc.detail}[/red]{hint}")
                raise typer.Exit(1) from exc
            for task in bar.tasks:
                bar.update(task.id, total=task.completed or 1, completed=task.completed or 1)
    _print_runs(runs)
    failed = [r for r in runs if r.status in ("failed", "partial")]
    if failed:
        err.print(
            f"[red]{len(failed)} run(s) did not finish cleanly[/red]; their failed rows are "
            f"retried on the next run. Rows: GET /api/v1/crm/runs/<id>/rows, "
            f"or `revhub crm runs {name}`."
        )
        raise typer.Exit(1)


@crm_app.command("runs")
def crm_runs(
    name: Annotated[str | None, typer.Argument(help="Only this connection's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 20,
) -> None:
    """List sync runs, newest first: step, status, rows by outcome, rate-limit pauses."""
    from revhub.crm import runs as crm_runs_service
    from revhub.crm import service as crm_service

    with _hub() as (_settings, db), db.transaction() as session:
        try:
            connection_id = crm_service.get_connection(session, name=name).id if name else None
        except RevHubError as exc:
            err.print(f"[red]{exc.detail}[/red] (see `revhub crm list`).")
            raise typer.Exit(1) from exc
        found = crm_runs_service.list_runs(session, connection_id=connection_id, limit=limit)
    _print_runs(found)


@crm_app.command("reconcile")
def crm_reconcile(name: Annotated[str, typer.Argument(help="The connection's name.")]) -> None:
    """Compare every contact of the hub with the CRM and report the discrepancies and the
    sync accuracy (seed target 99.95 %); exit 1 below the target. Differing contacts enter
    the failed-row index, so the next sync pushes them again."""
    from revhub.contacts.pii import pii_for
    from revhub.crm import service as crm_service
    from revhub.crm.reconcile import reconcile_connection

    with _hub() as (settings, db):
        try:
            with out.status(f"Reading {name} and comparing…"):
                report = reconcile_connection(
                    db,
                    pii_for(settings),
                    crm_service.credentials_box(settings),
                    crm_service.mappings_for(settings),
                    name=name,
                    trigger="cli",
                )
        except ConnectorError as exc:
            err.print(f"[red]{name}: the CRM did not answer:[/red] {exc}")
            raise typer.Exit(1) from exc
    table = Table("hub id", "crm id", "problem")
    for found in report.discrepancies[:50]:
        table.add_row(str(found.hub_id or "-"), found.crm_id or "-", found.problem)
    if report.discrepancies:
        out.print(table)
    verdict = "[green]meets[/green]" if report.meets_target else "[red]misses[/red]"
    out.print(
        f"{name}: {report.matching} of {report.compared} records match — "
        f"{report.accuracy_percent} % ({verdict} the 99.95 % target); run {report.run_id}."
    )
    if not report.meets_target:
        raise typer.Exit(1)


def _print_runs(found: Iterable[SyncRunRow]) -> None:
    table = Table("run", "step", "trigger", "status", "rows", "paused s", "started", "detail")
    for run in found:
        rows = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items())) or "none"
        table.add_row(
            str(run.id),
            f"{run.direction} {run.kind}s",
            run.trigger,
            run.status,
            rows,
            f"{run.paused_seconds:.1f}",
            _when(run.started_at),
            run.detail,
        )
    out.print(table)


@crm_app.command("mappings")
def crm_mappings() -> None:
    """Print the field mappings in force as YAML (REVHUB_CRM_MAPPINGS, else seed 002's
    defaults): save them to a file, edit, and point REVHUB_CRM_MAPPINGS at it."""
    from revhub.crm.mappings import default_text
    from revhub.crm.service import mappings_for

    try:
        settings = load_settings()
        mappings_for(settings)
    except ConfigurationError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    path = settings.crm_mappings
    typer.echo(path.read_text() if path else default_text(), nl=False)
