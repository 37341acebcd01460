"""Migration ``20261207unquoted``: notes stored before the validation step stopped quoting
sealed fields are rewritten in place; other notes are kept."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import Database, utcnow
from revhub.core.events.models import OutboxEvent
from revhub.core.idempotency import IdempotentRequest
from revhub.core.settings import Settings
from revhub.core.webhooks.models import WebhookDelivery, WebhookSubscription
from revhub.migrations import alembic_config, upgrade
from revhub.sales import schemas as s
from revhub.sales.models import LeadCapture
from revhub.sales.service import capture_lead
from tests.sales.factories import lead_at, unique

BEFORE = "20261207reference"
OLD_NOTES = {
    "problems": ["phone: '030 1234567' is not a valid number (no country, so it needs a +); "
                 "dropped (-15)", "job_title: missing; B2B leads need one (-10)"],
    "transformations": ["email: 'Ada@X.example' -> 'ada@x.example'",
                        "first_name: 'JOHN' -> 'John'", 'last_name: " O\'BRIEN " -> "O\'Brien"',
                        "phone: '+1 (415) 555-2671' -> '+14155552671'",
                        "company: ' Acme ' -> 'Acme'", "company_domain: 'x.example' from website"],
}  # fmt: skip
NEW_NOTES = {
    "problems": ["phone: not a valid number (no country, so it needs a +); dropped (-15)",
                 "job_title: missing; B2B leads need one (-10)"],
    "transformations": ["email: normalised", "first_name: recased",
                        "last_name: whitespace tidied and recased", "phone: normalised",
                        "company: ' Acme ' -> 'Acme'", "company_domain: 'x.example' from website"],
}  # fmt: skip


def _old_steps(steps: dict[str, Any]) -> dict[str, Any]:
    return steps | {"validation": steps["validation"] | OLD_NOTES}


def test_stored_notes_stop_quoting_names_and_phones(
    scratch_database_url: str, scratch_db: Database, settings: Settings
) -> None:
    with scratch_db.transaction() as session:
        answer = capture_lead(
            session, pii_for(settings), lead_in=s.LeadCreate(**lead_at(f"{unique('m')}.example"))
        )
        capture = session.scalars(select(LeadCapture)).one()
        session.execute(
            update(LeadCapture)
            .where(LeadCapture.id == capture.id)
            .values(steps=_old_steps(capture.steps))
        )
        processed = _processed(session)
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.seq == processed.seq)
            .values(payload=processed.payload | {"steps": _old_steps(processed.payload["steps"])})
        )
        session.add(
            IdempotentRequest(
                key=unique("k"), credential_id=uuid.uuid4(), route="POST /leads",
                body_sha256="0" * 64, status_code=201, created_at=utcnow(),
                response={"lead_id": str(answer.lead_id), "steps": {"validation": OLD_NOTES}},
            )
        )  # fmt: skip

        hook = WebhookSubscription(
            name="crm", url="http://127.0.0.1/", topics=["lead-capture"], event_types=None,
            sealed_secret="x", created_by="test",
        )  # fmt: skip
        session.add(hook)
        session.flush()
        old_event = {
            "payload": processed.payload | {"steps": _old_steps(processed.payload["steps"])}
        }
        session.add(
            WebhookDelivery(
                subscription_id=hook.id, event_id=uuid.uuid4(), event_type="lead.processed",
                topic="lead-capture", event=old_event,
            )
        )  # fmt: skip

    command.downgrade(alembic_config(scratch_database_url), BEFORE)
    upgrade(scratch_database_url)

    with scratch_db.reading() as session:
        steps = session.scalars(select(LeadCapture.steps)).one()
        event = _processed(session).payload
        kept = session.scalars(select(IdempotentRequest.response)).one()
        delivery = session.scalars(select(WebhookDelivery.event)).one()
    delivered = delivery["payload"]["steps"]["validation"]
    for validation in (steps["validation"], event["steps"]["validation"], delivered):
        assert {k: validation[k] for k in NEW_NOTES} == NEW_NOTES
    assert kept["steps"]["validation"] == NEW_NOTES
    assert steps["deduplication"]["outcome"] == "created"  # the rest of the steps is kept


def _processed(session: Session) -> OutboxEvent:
    return session.scalars(
        select(OutboxEvent).where(OutboxEvent.event_type == "lead.processed")
    ).one()


def test_an_upgrade_on_sqlite_empties_the_write_ahead_log(tmp_path: Path) -> None:
    """Even while another connection keeps the log open (a running server): the pages as
    they were before a data migration must not stay readable beside the database."""
    path = tmp_path / "hub.db"
    other = sqlite3.connect(path)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("SELECT count(*) FROM sqlite_master").fetchall()  # holds the log's index
    try:
        upgrade(f"sqlite:///{path}")
        wal = Path(f"{path}-wal")
        assert wal.exists()  # the other connection keeps it
        assert wal.stat().st_size == 0
    finally:
        other.close()
