"""Migration ``20261208sealed``: a person's e-mail and names, stored in the clear by the CRM
merge before ``crm.personal`` sealed them, are sealed in place (the merge still reads
them), and the copies in conflict events, alerts and reconciliation rows stop quoting them;
everything else is kept as it was."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from revhub.contacts import service as contacts
from revhub.contacts.pii import pii_for
from revhub.contacts.stages import Stage
from revhub.core.db import Base, Database, utcnow
from revhub.core.events.models import DeadLetter, OutboxEvent
from revhub.core.settings import Settings
from revhub.core.webhooks.models import WebhookDelivery, WebhookSubscription
from revhub.crm import service
from revhub.crm.models import Conflict, CrmLink, FieldDecision, SyncRow, SyncRun
from revhub.crm.personal import open_value, opened_values
from revhub.migrations import alembic_config, upgrade
from revhub.sales.models import SalesNotification

BEFORE = "20261207unquoted"
EMAIL, CRM_EMAIL = "grace.hopper@navy.example", "amazing.grace@navy.example"
CONFLICT_PAYLOAD = {
    "conflict_id": str(uuid.uuid4()),
    "field": "email",
    "hub_value": EMAIL,
    "crm_value": CRM_EMAIL,
}
OLD_ALERT = (
    f"hs and the hub disagree on the contact field email of Navy (hub {EMAIL!r}, CRM "
    f"{CRM_EMAIL!r}): for Ann — choose a side at POST /api/v1/crm/conflicts/1/resolve."
)


def test_clear_personal_values_of_the_crm_merge_are_sealed(
    scratch_database_url: str,
    scratch_db: Database,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pii = pii_for(settings)
    monkeypatch.setenv("REVHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REVHUB_PII_KEY", settings.secrets["pii_key"].decode())
    with scratch_db.transaction() as session:
        profile = contacts.Profile(email=EMAIL, first_name="Grace", company="Navy")
        contact = contacts.create(
            session, pii, profile=profile, stage=Stage.LEAD, account_id=None, source="test"
        )
        connection = service.add_connection(
            session, service.credentials_box(settings), name="hs", crm="hubspot",
            credentials={"access_token": "t"},
        )  # fmt: skip
        at = utcnow()
        pushed = {"email": EMAIL, "first_name": "Grace", "company": "Navy", "lead_score": 60}
        session.add_all([
            CrmLink(connection_id=connection.id, kind="contact", hub_id=contact.id,
                    crm_id="1", pushed=pushed),
            FieldDecision(connection_id=connection.id, kind="contact", hub_id=contact.id,
                          field="first_name", winner="crm", kept_value="Amazing",
                          lost_value="Grace", hub_changed_at=at, crm_changed_at=at),
            FieldDecision(connection_id=connection.id, kind="contact", hub_id=contact.id,
                          field="company", winner="crm", kept_value="US Navy",
                          lost_value="Navy", hub_changed_at=at, crm_changed_at=at),
            Conflict(connection_id=connection.id, kind="contact", hub_id=contact.id,
                     crm_id="1", field="email", hub_value=EMAIL, crm_value=CRM_EMAIL,
                     hub_changed_at=at, crm_changed_at=at),
            OutboxEvent(event_id=uuid.uuid4(), topic="crm", event_type="crm.conflict_detected",
                        tenant_id="navy.example", occurred_at=at, payload=CONFLICT_PAYLOAD,
                        meta={}),
            SalesNotification(event_id=uuid.uuid4(), kind="crm_conflict",
                              contact_id=contact.id, message=OLD_ALERT),
        ])  # fmt: skip
        envelope = {"event_type": "crm.conflict_detected", "payload": CONFLICT_PAYLOAD}
        hook = WebhookSubscription(
            name="ops", url="http://127.0.0.1/", topics=["crm"], event_types=None,
            sealed_secret="x", created_by="test",
        )  # fmt: skip
        run = SyncRun(connection_id=connection.id, direction="reconcile", kind="contact",
                      trigger="manual")  # fmt: skip
        session.add_all([hook, run])
        session.flush()
        session.add_all([
            WebhookDelivery(subscription_id=hook.id, event_id=uuid.uuid4(),
                            event_type="crm.conflict_detected", topic="crm", event=envelope),
            DeadLetter(consumer="alert-system", event_id=uuid.uuid4(), topic="crm",
                       event=envelope, error="boom", attempts=3),
            SyncRow(run_id=run.id, hub_id=contact.id, crm_id="1", outcome="failed",
                    error=f"email: hub {EMAIL!r}, CRM {CRM_EMAIL!r}; lead_score: hub 60, CRM 55"),
        ])  # fmt: skip

    command.downgrade(alembic_config(scratch_database_url), BEFORE)
    upgrade(scratch_database_url)

    with scratch_db.reading() as session:
        written = "".join(
            repr(session.execute(table.select()).all())
            for table in Base.metadata.sorted_tables
            if table.name != "contact"
        ).lower()
        for personal in ("grace.hopper", "amazing.grace", "'grace'", "'amazing'"):
            assert personal not in written, f"{personal} is readable"
        link = session.scalars(select(CrmLink)).one()
        assert opened_values(pii, link.pushed) == pushed
        assert link.pushed["company"] == "Navy" and link.pushed["lead_score"] == 60
        decisions = {d.field: d for d in session.scalars(select(FieldDecision))}
        assert open_value(pii, decisions["first_name"].lost_value) == "Grace"
        assert decisions["company"].lost_value == "Navy"
        conflict = session.scalars(select(Conflict)).one()
        assert open_value(pii, conflict.crm_value) == CRM_EMAIL
        event = session.scalars(select(OutboxEvent.payload)).one()
        assert event == {"conflict_id": CONFLICT_PAYLOAD["conflict_id"], "field": "email",
                         "values_withheld": True}  # fmt: skip
        for kept in (
            session.scalars(select(WebhookDelivery.event)).one(),
            session.scalars(select(DeadLetter.event)).one(),
        ):
            assert kept["payload"]["values_withheld"] is True
        alert = session.scalars(select(SalesNotification.message)).one()
        assert "of Navy (personal data: see the conflict): for Ann" in alert
        error = session.scalars(select(SyncRow.error)).one()
        assert error == "email: differs (personal data, not quoted); lead_score: hub 60, CRM 55"
