"""Fixtures: a real database (SQLite by default, PostgreSQL when REVHUB_DATABASE_URL says so),
each test inside a transaction rolled back at its end, the app, an HTTP client, factories.

Set ``REVHUB_DATABASE_URL=postgresql+psycopg://…`` and ``REVHUB_REDIS_URL=redis://…`` to run
the same suite on PostgreSQL and Redis (CI does). A configured server that cannot be reached
fails the run; nothing is skipped silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from revhub.api import create_app
from revhub.core.db import Database, make_engine
from revhub.core.settings import Settings
from revhub.migrations import upgrade
from tests.factories import ApiKeyFactory

pytest_plugins = ["tests.eventing"]

DATABASE_URL = os.environ.get("REVHUB_DATABASE_URL")
REDIS_URL = os.environ.get("REVHUB_REDIS_URL")


def pytest_report_header() -> list[str]:
    return [
        f"revhub database: {DATABASE_URL or 'SQLite (temporary file)'}",
        f"revhub redis: {REDIS_URL or 'not configured (in-memory rate limits)'}",
    ]


@pytest.fixture(scope="session", autouse=True)
def _configured_redis_answers() -> None:
    """A configured Redis must answer: CI fails rather than quietly testing less."""
    if REDIS_URL:
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            pytest.exit(f"cannot reach REVHUB_REDIS_URL={REDIS_URL}: {exc}", returncode=3)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if DATABASE_URL:
        return DATABASE_URL
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'revhub-test.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The test database, emptied and migrated to head once per run."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
    except Exception as exc:
        pytest.exit(f"cannot reach the test database {database_url}: {exc}", returncode=3)
    upgrade(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def db(connection: Connection, engine: Engine) -> Database:
    """Sessions joined to the test's transaction: their commits are savepoints."""
    factory = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    return Database(engine, factory)


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.session_factory() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        redis_prefix=f"revhub-test-{uuid.uuid4().hex[:8]}:",  # no bucket outlives its test
        jwt_secret=SecretStr("test-jwt-secret-0123456789abcdef0123456789"),
        pii_key=SecretStr("test-pii-key-0123456789abcdef0123456789abc"),
        audit_key=SecretStr("test-audit-key-0123456789abcdef012345678"),
        log_format="json",
        embedded_worker=False,  # tests drive the bus themselves, on the test's connection
        capture_process=False,  # a child could not see the test's rolled-back transaction
    )


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, db=db, check_schema=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def api_keys(session: Session) -> ApiKeyFactory:
    return ApiKeyFactory(session)


@pytest.fixture
def auth_headers(api_keys: ApiKeyFactory) -> Callable[[str], dict[str, str]]:
    """``auth_headers("sales")`` → headers carrying a new key of that role."""

    def make(role: str) -> dict[str, str]:
        _key, token = api_keys.create(role=role)
        return {"X-API-Key": token}

    return make


@pytest.fixture
def scratch_database_url(tmp_path: Path, database_url: str) -> Iterator[str]:
    """An empty database of the configured kind for tests whose processes commit for real
    (the CLI, served processes): a fresh PostgreSQL database, or a new SQLite file."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"revhub_scratch_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield str(make_url(database_url).set(database=name).render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def cli_settings(
    tmp_path: Path, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings ``revhub`` commands run with in this test (its data directory and the
    scratch database, migrated by ``revhub migrate``), as the command itself reads them."""
    from typer.testing import CliRunner

    from revhub.cli import app

    monkeypatch.setenv("REVHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REVHUB_DATABASE_URL", scratch_database_url)
    assert CliRunner().invoke(app, ["migrate"]).exit_code == 0
    return Settings(data_dir=tmp_path, database_url=scratch_database_url)


@pytest.fixture
def scratch_db(scratch_database_url: str) -> Iterator[Database]:
    """The scratch database, migrated: for an app whose child processes commit for real."""
    upgrade(scratch_database_url)
    db = Database.from_url(scratch_database_url)
    yield db
    db.engine.dispose()


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("needs REVHUB_REDIS_URL (CI sets it)")
    return REDIS_URL
