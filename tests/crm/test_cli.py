"""``revhub crm sync``, ``runs`` and ``reconcile`` as an operator runs them, on a database
of their own (the CLI commits for real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session

from revhub.api import create_app
from revhub.contacts.pii import pii_for
from revhub.core.db import make_engine
from revhub.core.errors import ConfigurationError
from revhub.core.settings import Settings, load_settings
from revhub.crm.mappings import Mode, default_text
from revhub.crm.service import mappings_for
from revhub.sales import schemas as sales_schemas
from revhub.sales.service import capture_lead
from tests.crm.conftest import HUBSPOT_TOKEN, cli
from tests.crm.fakes.hubspot import HubSpotState
from tests.sales.factories import lead_at


def _capture(settings: Settings, count: int) -> list[str]:
    engine = make_engine(settings.effective_database_url)
    emails = [f"ada{i}@firm{i}.example" for i in range(count)]
    with Session(engine) as session:
        for email in emails:
            body = lead_at(email.split("@")[1], email.split("@")[0])
            capture_lead(
                session, pii_for(settings), lead_in=sales_schemas.LeadCreate.model_validate(body)
            )
        session.commit()
    engine.dispose()
    return emails


def test_the_cli_syncs_lists_runs_and_reconciles(
    cli_home: Settings, hubspot: tuple[HubSpotState, str]
) -> None:
    state, url = hubspot
    emails = _capture(cli_home, 3)
    creds = {"REVHUB_CRM_CREDENTIALS": json.dumps({"access_token": HUBSPOT_TOKEN})}
    assert cli("crm", "add", "hs", "--crm", "hubspot", "--base-url", url, env=creds)[0] == 0
    code, said = cli("crm", "sync", "hs", "--full")
    assert code == 0, said
    assert "hs: push contacts" in said and "created 3" in said
    assert all(state.find("contacts", "email", e) for e in emails)
    code, said = cli("crm", "runs", "hs")
    assert code == 0 and said.count("succeeded") == 4 and "push deals" in said
    code, said = cli("crm", "reconcile", "hs")
    assert code == 0 and "3 of 3 records match" in said and "100.0 %" in said, said
    stored = state.find("contacts", "email", emails[0])
    assert stored is not None
    stored["properties"]["lastname"] = "Planted"
    code, said = cli("crm", "reconcile", "hs")
    assert code == 1 and "2 of 3 records match" in said and "last_name" in said, said
    state.down = True
    code, said = cli("crm", "sync", "hs")
    assert code == 1 and "retried on the next run" in said and "failed" in said
    code, said = cli("crm", "sync", "nope")
    assert code == 1 and "revhub crm list" in said
    assert cli("crm", "runs", "nope")[0] == 1


def test_mappings_are_printed_edited_and_loaded_from_revhub_crm_mappings(
    cli_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, printed = cli("crm", "mappings")
    assert code == 0 and printed == default_text()
    document = yaml.safe_load(printed)
    document["hubspot"]["contact"]["mode"] = "mirror"
    mine = tmp_path / "mappings.yaml"
    mine.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("REVHUB_CRM_MAPPINGS", str(mine))
    code, printed = cli("crm", "mappings")
    assert code == 0 and yaml.safe_load(printed)["hubspot"]["contact"]["mode"] == "mirror"
    assert mappings_for(load_settings()).hubspot.contact.mode is Mode.MIRROR
    document["hubspot"]["deal"]["fields"]["amount"]["owner"] = "nobody"
    mine.write_text(yaml.safe_dump(document))
    code, said = cli("crm", "mappings")
    assert code == 1 and "hubspot.deal.fields.amount.owner" in said and str(mine) in said
    code, said = cli("crm", "test", "anything")
    assert code == 2 and "hubspot.deal.fields.amount.owner" in said
    with pytest.raises(ConfigurationError, match=r"amount\.owner"):
        create_app(load_settings(), check_schema=False)
    monkeypatch.setenv("REVHUB_CRM_MAPPINGS", str(tmp_path / "missing.yaml"))
    code, said = cli("crm", "mappings")
    assert code == 1 and "revhub crm mappings > FILE" in said.replace("\n", " ")
