"""`revhub jobs list` and `revhub jobs run`, as a user runs them, on a database of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from revhub.cli import app
from revhub.core.db import Database
from revhub.core.jobs.models import JobRun
from tests.core.jobs import plugin

runner = CliRunner()


@pytest.fixture
def cli_db(
    tmp_path: Path, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    monkeypatch.setenv("REVHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVHUB_DATABASE_URL", scratch_database_url)
    monkeypatch.setenv("REVHUB_PLUGINS", '["tests.core.jobs.plugin"]')
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    db = Database.from_url(scratch_database_url)
    yield db
    db.engine.dispose()


def _runs(db: Database) -> list[JobRun]:
    with db.transaction() as session:
        return [*session.scalars(select(JobRun))]


def test_list_shows_every_job_and_which_have_no_handler_yet(cli_db: Database) -> None:
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if "│" in line}
    assert (
        "no handler yet" in lines["health_score_update"]
        and "0 6 * * *" in lines["health_score_update"]
    )
    assert "active" in lines["crm_contact_sync"] and "0 2 * * *" in lines["crm_contact_sync"]
    assert "0 5 1-7 * 1" in lines["executive_reporting"]
    assert "active" in lines["outbox_prune"] and "30 3 * * *" in lines["outbox_prune"]


def test_running_a_job_without_a_handler_says_so_and_does_nothing(cli_db: Database) -> None:
    result = runner.invoke(app, ["jobs", "run", "health_score_update"])
    assert result.exit_code == 1
    assert "'health_score_update' has no handler yet" in result.output
    assert "Nothing was run" in result.output
    assert _runs(cli_db) == []


def test_running_an_unknown_job_names_it(cli_db: Database) -> None:
    result = runner.invoke(app, ["jobs", "run", "crm_sync"])
    assert result.exit_code == 1 and "No job named 'crm_sync'" in result.output


def test_running_a_job_shows_progress_and_the_rows_processed(cli_db: Database) -> None:
    result = runner.invoke(app, ["jobs", "run", plugin.COUNTING])
    assert result.exit_code == 0, result.output
    assert "100%" in result.output
    assert f"{plugin.COUNTING} succeeded: 3 rows processed in" in result.output
    (run,) = _runs(cli_db)
    assert run.status == "succeeded" and run.trigger.startswith("manual:cli:")
    assert "succeeded" in runner.invoke(app, ["jobs", "list"]).output


def test_the_kernel_job_runs_by_hand(cli_db: Database) -> None:
    result = runner.invoke(app, ["jobs", "run", "outbox_prune"])
    assert result.exit_code == 0, result.output
    assert "outbox_prune succeeded: 0 rows processed" in result.output


def test_a_failing_job_exits_1_with_its_error(cli_db: Database) -> None:
    result = runner.invoke(app, ["jobs", "run", plugin.FAILING])
    assert result.exit_code == 1
    assert "failed" in result.output and "the warehouse is unreachable" in result.output
    (run,) = _runs(cli_db)
    assert run.status == "failed"
