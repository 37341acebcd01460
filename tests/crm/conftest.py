"""Fixtures of the CRM tests: vendor fakes served on loopback, each holding seed 002's custom
fields and accepting the credentials below."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revhub.cli import app
from revhub.core.settings import Settings
from tests.crm.fakes.hubspot import HubSpotState, build_app
from tests.crm.fakes.pipedrive import PipedriveState
from tests.crm.fakes.pipedrive import build_app as build_pipedrive
from tests.crm.fakes.salesforce import SalesforceState
from tests.crm.fakes.salesforce import build_app as build_salesforce
from tests.crm.fakes.server import serve
from tests.crm.test_hubspot import SEED_CONTACT_PROPERTIES, SEED_DEAL_PROPERTIES
from tests.crm.test_pipedrive import SEED_DEAL_FIELDS, SEED_PERSON_FIELDS
from tests.crm.test_salesforce import KEY as SALESFORCE_KEY
from tests.crm.test_salesforce import SEED_CUSTOM_FIELDS as SALESFORCE_SEED_FIELDS

HUBSPOT_TOKEN = "pat-na1-7f3c9e1d-secret"
SALESFORCE_APP = {"client_id": "consumer-key", "client_secret": "consumer-secret"}
"""The connected app's consumer key and secret (client-credentials flow)."""
PIPEDRIVE_TOKEN = "api-token-1"


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
def salesforce() -> Iterator[tuple[SalesforceState, str]]:
    """A Salesforce org with seed 002's custom fields, ``Marketing_Platform_ID__c`` an
    External ID on Lead and Opportunity, and a connected app for :data:`SALESFORCE_APP`;
    the URL is both the login host and the instance."""
    state = SalesforceState(
        custom_fields={k: set(v) for k, v in SALESFORCE_SEED_FIELDS.items()},
        external_ids={"Lead": {SALESFORCE_KEY}, "Opportunity": {SALESFORCE_KEY}},
        client_id=SALESFORCE_APP["client_id"],
        client_secret=SALESFORCE_APP["client_secret"],
    )
    with serve(build_salesforce(state)) as url:
        yield state, url


@pytest.fixture
def pipedrive() -> Iterator[tuple[PipedriveState, str]]:
    """A Pipedrive company with the mapping's custom fields on persons and deals, an API
    token and an OAuth app (its token endpoint at ``<url>/oauth/token``)."""
    state = PipedriveState(
        custom_fields={"persons": dict(SEED_PERSON_FIELDS), "deals": dict(SEED_DEAL_FIELDS)},
        api_token=PIPEDRIVE_TOKEN,
    )
    with serve(build_pipedrive(state)) as url:
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
