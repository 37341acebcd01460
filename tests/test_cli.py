"""The `revhub` command line, run as a user would, against a database of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from revhub.cli import app
from revhub.core.db import make_engine

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REVHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVHUB_DATABASE_URL", scratch_database_url)
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    return scratch_database_url


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_help_explains_each_command() -> None:
    output = _run("--help")
    for command in ("serve", "migrate", "keys", "audit"):
        assert command in output
    assert "create" in _run("keys", "--help") and "verify" in _run("audit", "--help")


def test_keys_lifecycle_and_audit_verify(cli_env: str) -> None:
    _run("migrate")
    created = _run("keys", "create", "--name", "ops", "--role", "admin")
    token = re.search(r"rhk_[A-Za-z0-9_-]+", created)
    client_id = re.search(r"client_id \(OAuth 2\.0\): ([0-9a-f-]{36})", created)
    assert token and client_id
    listed = _run("keys", "list")
    assert "ops" in listed and token.group(0) not in listed
    _run("keys", "revoke", client_id.group(1))
    assert "ops" not in _run("keys", "list") and "ops" in _run("keys", "list", "--all")
    assert "2 entries verified" in _run("audit", "verify")


def test_audit_verify_fails_on_an_edited_row(cli_env: str) -> None:
    _run("migrate")
    _run("keys", "create", "--name", "a", "--role", "sales")
    _run("keys", "create", "--name", "b", "--role", "sales")
    engine = make_engine(cli_env)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entry SET actor = 'mallory' WHERE seq = 1"))
    engine.dispose()
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "entry 1" in result.output and "changed" in result.output


def test_unknown_role_is_refused_with_the_choices(cli_env: str) -> None:
    _run("migrate")
    result = runner.invoke(app, ["keys", "create", "--name", "x", "--role", "ceo"])
    assert result.exit_code == 2
    assert "analyst" in result.output


def test_production_mode_without_secrets_says_what_to_set(
    cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVHUB_MODE", "production")
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 2
    assert "REVHUB_JWT_SECRET" in result.output and "REVHUB_PII_KEY" in result.output


def test_a_command_on_a_fresh_embedded_hub_migrates_first(cli_env: str) -> None:
    created = _run("keys", "create", "--name", "first", "--role", "admin")
    assert "rhk_" in created
    assert "1 entries verified" in _run("audit", "verify")
