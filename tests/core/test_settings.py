"""Configuration: embedded mode makes and keeps its secrets; production mode demands them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from revhub.api import ensure_schema
from revhub.core.db import Database
from revhub.core.errors import ConfigurationError
from revhub.core.settings import Settings
from revhub.migrations import schema_status


def test_embedded_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).secrets
    again = Settings(data_dir=tmp_path).secrets
    assert first == again
    assert len({first["jwt_secret"], first["pii_key"], first["audit_key"]}) == 3
    mode = stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode)
    assert mode == 0o600


def test_a_given_secret_wins_over_the_stored_one(tmp_path: Path) -> None:
    Settings(data_dir=tmp_path).secrets  # noqa: B018 (creates the file)
    given = Settings(data_dir=tmp_path, jwt_secret=SecretStr("given-secret" * 3)).secrets
    assert given["jwt_secret"] == b"given-secret" * 3


def test_production_needs_every_secret_and_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REVHUB_DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="REVHUB_AUDIT_KEY"):
        Settings(
            mode="production",
            jwt_secret=SecretStr("x" * 32),
            pii_key=SecretStr("y" * 32),
            database_url="postgresql+psycopg://h/db",
        )
    with pytest.raises(ConfigurationError, match="REVHUB_DATABASE_URL"):
        Settings(
            mode="production",
            jwt_secret=SecretStr("x" * 32),
            pii_key=SecretStr("y" * 32),
            audit_key=SecretStr("z" * 32),
        )


def test_environment_variables_configure_rate_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVHUB_RATE_LIMIT", '{"rate": 5, "burst": 10}')
    monkeypatch.setenv(
        "REVHUB_RATE_LIMITS", '{"finance": {"rate": 1, "burst": 2, "daily_quota": 100}}'
    )
    settings = Settings()
    assert settings.limit_for("sales").burst == 10
    assert settings.limit_for("finance").daily_quota == 100


def test_embedded_mode_migrates_an_empty_database(
    scratch_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=scratch_database_url)
    db = Database.from_url(scratch_database_url)
    with db.engine.connect() as conn:
        assert not schema_status(conn).up_to_date
    ensure_schema(settings, db)
    with db.engine.connect() as conn:
        assert schema_status(conn).up_to_date
    db.engine.dispose()


def test_production_mode_refuses_an_empty_database(
    scratch_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        mode="production",
        data_dir=tmp_path,
        database_url=scratch_database_url,
        jwt_secret=SecretStr("x" * 32),
        pii_key=SecretStr("y" * 32),
        audit_key=SecretStr("z" * 32),
    )
    db = Database.from_url(scratch_database_url)
    with pytest.raises(ConfigurationError, match="revhub migrate"):
        ensure_schema(settings, db)
    db.engine.dispose()


def test_production_refuses_short_secrets() -> None:
    with pytest.raises(ConfigurationError, match="REVHUB_PII_KEY must be at least 32"):
        Settings(
            mode="production",
            jwt_secret=SecretStr("x" * 32),
            pii_key=SecretStr("short"),
            audit_key=SecretStr("z" * 32),
            database_url="postgresql+psycopg://h/db",
        )


def _secrets_of(data_dir: str) -> dict[str, bytes]:
    return Settings(data_dir=Path(data_dir)).secrets


def test_processes_starting_together_agree_on_the_secrets(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=6) as pool:
        found = list(pool.map(_secrets_of, [str(tmp_path)] * 12))
    assert all(f == found[0] for f in found)
    assert Settings(data_dir=tmp_path).secrets == found[0]
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]
