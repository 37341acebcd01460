"""Fixtures of the CRM tests: vendor fakes served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revhub.cli import app
from revhub.core.settings import Settings
from tests.crm.fakes.hubspot import HubSpotState, build_app
from tests.crm.fakes.server import serve
from tests.crm.test_hubspot import SEED_CONTACT_PROPERTIES, SEED_DEAL_PROPERTIES

HUBSPOT_TOKEN = "pat-na1-7f3c9e1d-secret"


@pytest.fixture
def hubspot() -> Iterator[tuple[HubSpotState, str]]:
    """A HubSpot account with seed 002's custom properties and a private-app token."""
    state = HubSpotState(
        custom_properties={"contacts": SEED_CONTACT_PROPERTIES, "deals": SEED_DEAL_PROPERTIES},
        private_app_token=HUBSPOT_TOKEN,
    )
    with serve(build_app(state)) as url:
        yield state, url


@pytest.fixture
def cli_home(
    tmp_path: Path, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A migrated database of its own for the CLI (which commits for real), its settings
    in the environment as an operator would set them."""
    monkeypatch.setenv("REVHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REVHUB_DATABASE_URL", scratch_database_url)
    monkeypatch.setenv("COLUMNS", "300")
    assert CliRunner().invoke(app, ["migrate"]).exit_code == 0
    return Settings(data_dir=tmp_path / "data", database_url=scratch_database_url)


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``revhub …``; its exit code and output."""
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output
