"""``revhub crm sync``, ``runs`` and ``reconcile`` as an operator runs them, on a database
of their own (the CLI commits for real)."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import make_engine
from revhub.core.settings import Settings
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
    assert code == 0 and said.count("succeeded") == 3 and "push contacts" in said
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
    assert cli("crm", "sync", "nope")[0] == 1
    assert cli("crm", "runs", "nope")[0] == 1
