"""CRM connections: credentials stored sealed, checked against the CRM, by service and CLI."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from revhub.core.crypto import SecretBox
from revhub.core.db import Database, make_engine
from revhub.core.errors import Conflict, InvalidInput
from revhub.core.settings import Settings
from revhub.crm import service
from revhub.crm.mappings import default_mappings
from revhub.crm.models import CrmConnection
from tests.crm.conftest import HUBSPOT_TOKEN, cli
from tests.crm.fakes.hubspot import HubSpotState
from tests.crm.fakes.pipedrive import PipedriveState
from tests.crm.fakes.pipedrive import build_app as build_pipedrive
from tests.crm.fakes.salesforce import SalesforceState
from tests.crm.fakes.salesforce import build_app as build_salesforce
from tests.crm.fakes.server import serve
from tests.crm.test_hubspot import SEED_CONTACT_PROPERTIES
from tests.crm.test_pipedrive import SEED_DEAL_FIELDS, SEED_PERSON_FIELDS
from tests.crm.test_salesforce import KEY as SF_KEY
from tests.crm.test_salesforce import SEED_CUSTOM_FIELDS as SF_SEED_FIELDS

TOKEN = HUBSPOT_TOKEN


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(b"k" * 32, service.PURPOSE)


def test_credentials_are_sealed_and_the_check_passes(
    session: Session, box: SecretBox, db: Database, hubspot: tuple[HubSpotState, str]
) -> None:
    _state, url = hubspot
    service.add_connection(
        session, box, name="hs", crm="hubspot", credentials={"access_token": TOKEN}, base_url=url
    )
    stored = session.scalar(select(CrmConnection.credentials_sealed))
    assert stored is not None and TOKEN not in stored
    check = service.check_connection(session, box, name="hs", mappings=default_mappings(), db=db)
    assert check.ok and check.report.authenticated


def test_the_check_names_missing_fields_and_refused_credentials(
    session: Session, box: SecretBox, db: Database, hubspot: tuple[HubSpotState, str]
) -> None:
    state, url = hubspot
    state.custom_properties["contacts"] = SEED_CONTACT_PROPERTIES - {"marketing_platform_id"}
    service.add_connection(
        session, box, name="hs", crm="hubspot", credentials={"access_token": TOKEN}, base_url=url
    )
    service.add_connection(
        session, box, name="bad", crm="hubspot", credentials={"access_token": "x"}, base_url=url
    )
    check = service.check_connection(session, box, name="hs", mappings=default_mappings(), db=db)
    assert not check.ok and check.report.missing_fields == {"contact": ["marketing_platform_id"]}
    refused = service.check_connection(session, box, name="bad", mappings=default_mappings(), db=db)
    assert not refused.ok and not refused.report.authenticated


@pytest.mark.parametrize(
    ("crm", "credentials", "fields"),
    [
        ("zoho", {"access_token": "t"}, ["crm"]),
        ("hubspot", {}, ["credentials.access_token"]),
        ("hubspot", {"access_token": "t", "password": "p"}, ["credentials.password"]),
        ("hubspot", {"access_token": " "}, ["credentials.access_token"]),
    ],
)
def test_bad_connections_are_refused_naming_the_field(
    session: Session, box: SecretBox, crm: str, credentials: dict[str, str], fields: list[str]
) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.add_connection(session, box, name="x", crm=crm, credentials=credentials)
    assert [e.field for e in refused.value.errors] == fields
    assert session.scalar(select(CrmConnection)) is None


def test_names_are_unique(session: Session, box: SecretBox) -> None:
    service.add_connection(
        session, box, name="hs", crm="hubspot", credentials={"access_token": "a"}
    )
    with pytest.raises(Conflict):
        service.add_connection(
            session, box, name="hs", crm="hubspot", credentials={"access_token": "b"}
        )


def test_the_cli_adds_lists_and_tests_a_connection(
    cli_home: Settings, hubspot: tuple[HubSpotState, str]
) -> None:
    state, url = hubspot
    scratch_database_url = cli_home.effective_database_url
    code, said = cli("crm", "add", "hs", "--crm", "hubspot", "--base-url", url)
    assert code == 2 and "REVHUB_CRM_CREDENTIALS" in said
    creds = {"REVHUB_CRM_CREDENTIALS": json.dumps({"access_token": TOKEN})}
    code, said = cli("crm", "add", "hs", "--crm", "hubspot", "--base-url", url, env=creds)
    assert code == 0, said
    code, said = cli("crm", "list")
    assert code == 0 and "hs" in said and url in said and TOKEN not in said
    code, said = cli("crm", "test", "hs")
    assert code == 0 and "every mapped field exists" in said, said
    state.custom_properties["deals"] = set()
    code, said = cli("crm", "test", "hs")
    assert code == 1 and "marketing_platform_id" in said
    state.down = True
    code, said = cli("crm", "test", "hs")
    assert code == 1 and "did not answer" in said
    assert cli("crm", "test", "nope")[0] == 1
    engine = make_engine(scratch_database_url)
    with engine.connect() as conn:
        sealed = conn.execute(text("SELECT credentials_sealed FROM crm_connection")).scalar()
    engine.dispose()
    assert sealed and TOKEN not in sealed


def test_a_pipedrive_connection_takes_an_api_token_and_checks_custom_fields(
    session: Session, box: SecretBox, db: Database
) -> None:
    state = PipedriveState(
        custom_fields={"persons": dict(SEED_PERSON_FIELDS), "deals": dict(SEED_DEAL_FIELDS)}
    )
    with serve(build_pipedrive(state)) as url:
        service.add_connection(
            session,
            box,
            name="pd",
            crm="pipedrive",
            credentials={"api_token": "api-token-1"},
            base_url=url,
        )
        assert service.check_connection(
            session, box, name="pd", mappings=default_mappings(), db=db
        ).ok
        state.custom_fields["deals"] = {}
        missing = service.check_connection(
            session, box, name="pd", mappings=default_mappings(), db=db
        ).report.missing_fields
    assert "custom_fields.marketing_platform_id" in missing["deal"]
    with pytest.raises(InvalidInput) as refused:
        service.add_connection(session, box, name="pd2", crm="pipedrive", credentials={})
    assert refused.value.errors[0].field == "credentials.api_token"
    assert "access_token" in refused.value.errors[0].message


def test_a_salesforce_connection_logs_in_with_client_credentials(
    session: Session, box: SecretBox, db: Database
) -> None:
    state = SalesforceState(
        custom_fields={k: set(v) for k, v in SF_SEED_FIELDS.items()},
        external_ids={"Lead": {SF_KEY}, "Opportunity": {SF_KEY}},
    )
    good = {"client_id": "consumer-key", "client_secret": "consumer-secret"}
    with serve(build_salesforce(state)) as url:
        service.add_connection(
            session, box, name="sf", crm="salesforce", credentials=good, base_url=url
        )
        assert service.check_connection(
            session, box, name="sf", mappings=default_mappings(), db=db
        ).ok
        service.add_connection(
            session,
            box,
            name="sf-bad",
            crm="salesforce",
            credentials={"client_id": "consumer-key", "client_secret": "wrong"},
            base_url=url,
        )
        assert not service.check_connection(
            session, box, name="sf-bad", mappings=default_mappings(), db=db
        ).report.authenticated
    with pytest.raises(InvalidInput) as refused:
        service.add_connection(
            session, box, name="sf2", crm="salesforce", credentials={"private_key": "pem"}
        )
    assert [e.field for e in refused.value.errors] == [
        "credentials.client_id",
        "credentials.username",
    ]
