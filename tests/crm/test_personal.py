"""The merge state holds a person's names and e-mail sealed, as the contact does (DESIGN §6):
the agreed values on each link, the values a decision kept and lost, a conflict's two
sides; events about a personal field withhold its values, and reconciliation does not
quote them in its run log. The API still shows an administrator what they must choose."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from revhub.cli import app
from revhub.contacts.pii import Pii, pii_for
from revhub.core.db import Base, Database, make_engine, utcnow
from revhub.core.events.bus import Bus
from revhub.core.settings import Settings
from revhub.core.webhooks.jobs import secret_box
from revhub.core.webhooks.models import WebhookSubscription
from revhub.core.webhooks.schemas import SubscriptionCreate
from revhub.core.webhooks.service import create_subscription
from revhub.crm import service
from revhub.crm.models import Conflict, CrmConnection, CrmLink
from revhub.crm.personal import open_value, opened_values, seal_value
from revhub.crm.pull import pull
from revhub.crm.push import push_contacts
from revhub.crm.reconcile import reconcile
from revhub.sales.jobs import alerts_consumer
from tests.crm.factories import LEADS, capture, later, salesforce_target
from tests.crm.fakes.salesforce import SALES_REP, SalesforceState
from tests.crm.test_sync_salesforce import lead_of
from tests.eventing import deliver_all
from tests.sales.factories import CONTACTS, SALES, Headers, contact_by_email, created

CRM = "/api/v1/crm"


def _database_text(session: Session) -> str:
    session.expire_all()
    return "".join(
        repr(session.execute(table.select()).all()) for table in Base.metadata.sorted_tables
    ).lower()


def test_a_conflict_on_a_name_is_sealed_at_rest_and_shown_to_an_administrator(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    session: Session,
    bus: Bus,
    salesforce: tuple[SalesforceState, str],
) -> None:
    state, url = salesforce
    (person,) = capture(client, auth_headers, 1)
    plain = salesforce_target(db, settings, url)
    target = replace(plain, critical=plain.critical | {"first_name"})
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    sales = auth_headers("sales")
    again = {"email": person["email"], "first_name": "Zebulon", "last_name": "Hopper"}
    created(client.post(LEADS, json=again | {"company": "Navy"}, headers=sales))
    held = lead_of(state, person["lead_id"])
    state.edit("Lead", held["Id"], {"FirstName": "Quirinus"}, at=later(), by=SALES_REP)
    assert pull(db, pii, target, "contact", trigger="manual").status == "succeeded"
    found = reconcile(db, pii, target)
    (problem,) = [d.problem for d in found.discrepancies]
    assert "first_name: differs (personal data, not quoted)" in problem.split("; ")

    admin = auth_headers("admin")
    (conflict,) = client.get(f"{CRM}/conflicts", headers=admin).json()
    assert (conflict["field"], conflict["hub_value"], conflict["crm_value"]) == (
        "first_name",
        "Zebulon",
        "Quirinus",
    )
    assert deliver_all(bus, alerts_consumer()) >= 1
    notes = client.get(f"{SALES}/notifications", headers=sales).json()["items"]
    (alert,) = [n for n in notes if n["kind"] == "crm_conflict"]
    assert "personal data: see the conflict" in alert["message"]
    written = _database_text(session)
    local_part = person["email"].split("@")[0].lower()
    for personal in ("zebulon", "quirinus", local_part):
        assert personal not in written, f"{personal!r} is readable in the database"

    settled = client.post(
        f"{CRM}/conflicts/{conflict['id']}/resolve", json={"side": "crm"}, headers=admin
    )
    assert settled.status_code == 200, settled.text
    assert settled.json()["crm_value"] == "Quirinus"
    contact = contact_by_email(client, sales, person["email"])
    profile = created(client.get(f"{CONTACTS}/{contact['id']}", headers=sales), 200)
    assert profile["first_name"] == "Quirinus"
    written = _database_text(session)
    for personal in ("zebulon", "quirinus", local_part):
        assert personal not in written, f"{personal!r} is readable in the database"


def test_values_stored_in_the_clear_before_sealing_still_open(settings: Settings) -> None:
    pii = pii_for(settings)
    assert open_value(pii, "Grace") == "Grace"
    sealed = seal_value(pii, "email", "grace@navy.example")
    assert "navy" not in repr(sealed)
    assert open_value(pii, sealed) == "grace@navy.example"
    assert seal_value(pii, "company", "Navy") == "Navy"
    assert seal_value(pii, "first_name", None) is None


def test_rotate_pii_reseals_the_merge_state_crm_credentials_and_webhook_secrets(
    cli_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = cli_settings
    old = pii_for(before)
    engine = make_engine(before.effective_database_url)
    with Session(engine) as session:
        connection = service.add_connection(
            session,
            service.credentials_box(before),
            name="sf",
            crm="salesforce",
            credentials={"client_id": "id", "client_secret": "shh"},
        )
        wanted = SubscriptionCreate(name="ops", url="https://ops.example/hook", topics=["crm"])
        create_subscription(session, sub_in=wanted, created_by="test", box=secret_box(before))
        session.add(
            CrmLink(
                connection_id=connection.id,
                kind="contact",
                hub_id=uuid.uuid4(),
                crm_id="00Q1",
                pushed={
                    "first_name": seal_value(old, "first_name", "Grace"),
                    "email": "grace@navy.example",  # stored in the clear before sealing
                    "company": "Navy",
                },
            )
        )
        session.commit()
    monkeypatch.setenv("REVHUB_PII_KEY", "n" * 40)
    monkeypatch.setenv("REVHUB_PII_PREVIOUS_KEYS", json.dumps([before.secrets["pii_key"].decode()]))
    result = CliRunner().invoke(app, ["keys", "rotate-pii"])
    assert result.exit_code == 0, result.output
    assert "4 values re-sealed" in result.output  # name, e-mail, credentials, secret
    monkeypatch.setenv("REVHUB_PII_PREVIOUS_KEYS", "[]")
    after = Settings(data_dir=before.data_dir, database_url=before.effective_database_url)
    assert after.pii_previous == []
    new = pii_for(after)
    with Session(engine) as session:
        link = session.scalars(select(CrmLink)).one()
        assert opened_values(new, link.pushed) == {
            "first_name": "Grace",
            "email": "grace@navy.example",
            "company": "Navy",
        }
        assert "navy.example" not in json.dumps(link.pushed)
        stored = session.scalars(select(CrmConnection)).one()
        credentials = service.credentials_box(after).open(stored.credentials_sealed)
        assert json.loads(credentials)["client_secret"] == "shh"
        subscription = session.scalars(select(WebhookSubscription)).one()
        assert secret_box(after).open(subscription.sealed_secret).startswith("whsec_")
    engine.dispose()


def test_a_conflict_value_no_configured_key_opens_is_a_409_naming_the_fix(
    client: TestClient, auth_headers: Headers, session: Session, settings: Settings
) -> None:
    connection = service.add_connection(
        session, service.credentials_box(settings), name="hs", crm="hubspot",
        credentials={"access_token": "t"},
    )  # fmt: skip
    stranger = Pii(b"x" * 40)
    conflict = Conflict(
        connection_id=connection.id, kind="contact", hub_id=uuid.uuid4(), crm_id="1",
        field="email", hub_value=seal_value(pii_for(settings), "email", "a@navy.example"),
        crm_value=seal_value(stranger, "email", "b@navy.example"),
        hub_changed_at=utcnow(), crm_changed_at=utcnow(),
    )  # fmt: skip
    session.add(conflict)
    session.flush()
    admin = auth_headers("admin")
    (listed,) = client.get(f"{CRM}/conflicts", headers=admin).json()
    assert listed["hub_value"] == "a@navy.example"
    assert listed["crm_value"].startswith("(unreadable")
    refused = client.post(
        f"{CRM}/conflicts/{conflict.id}/resolve", json={"side": "crm"}, headers=admin
    )
    assert refused.status_code == 409, refused.text
    assert "REVHUB_PII_PREVIOUS_KEYS" in refused.json()["detail"]
    assert client.get(f"{CRM}/conflicts", headers=admin).json()[0]["status"] == "open"
