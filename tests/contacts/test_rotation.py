"""Rotating the PII key: old values still open during the change, everything is re-sealed
with the new key, blind indexes follow, and the old key is then no longer needed."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from revhub.cli import app
from revhub.contacts import service as contacts
from revhub.contacts.models import Contact, Identity
from revhub.contacts.pii import Pii
from revhub.contacts.rotation import rotate_pii
from revhub.contacts.stages import Stage
from revhub.core.db import make_engine
from revhub.core.settings import Settings

OLD, NEW = b"o" * 40, b"n" * 40


def person(session: Session, pii: Pii, email: str) -> Contact:
    profile = contacts.Profile(email=email, first_name="Ann", phone="+14155552671")
    return contacts.create(
        session, pii, profile=profile, stage=Stage.LEAD, account_id=None, source="test"
    )


def test_rotation_reseals_and_reindexes(session: Session) -> None:
    old = Pii(OLD)
    contact = person(session, old, "ann@example.com")
    new = Pii(NEW, previous=(OLD,))
    assert contacts.get_by_email(session, new, email="ann@example.com") is None
    report = rotate_pii(session, new)
    assert report.values_resealed == 4  # email, phone, first name on the contact; the identity
    assert report.indexes_recomputed == 2  # e-mail identity and phone
    alone = Pii(NEW)
    found = contacts.get_by_email(session, alone, email="ANN@example.com")
    assert found is not None and found.id == contact.id
    assert contacts.read_person(alone, found).first_name == "Ann"
    with pytest.raises(ValueError, match="rotated away"):
        old.open(found.email_sealed)
    assert rotate_pii(session, alone).values_resealed == 0


def test_a_value_no_key_opens_is_reported_not_lost(session: Session) -> None:
    person(session, Pii(b"x" * 40), "lost@example.com")
    report = rotate_pii(session, Pii(NEW))
    assert report.unreadable and "contact" in report.unreadable[0]


def test_rotate_pii_command(cli_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    old_secret = cli_settings.secrets["pii_key"]
    engine = make_engine(cli_settings.effective_database_url)
    with Session(engine) as session:
        person(session, Pii(old_secret), "cli@example.com")
        session.commit()
    monkeypatch.setenv("REVHUB_PII_KEY", NEW.decode())
    monkeypatch.setenv("REVHUB_PII_PREVIOUS_KEYS", json.dumps([old_secret.decode()]))
    result = runner.invoke(app, ["keys", "rotate-pii"])
    assert result.exit_code == 0, result.output
    assert "4 values re-sealed" in result.output
    with Session(engine) as session:
        assert contacts.get_by_email(session, Pii(NEW), email="cli@example.com") is not None
        identity = session.scalars(select(Identity)).one()
        assert not Pii(NEW).box.is_stale(identity.sealed_value or "")
    monkeypatch.setenv("REVHUB_PII_PREVIOUS_KEYS", "[]")
    monkeypatch.setenv("REVHUB_PII_KEY", "z" * 40)
    refused = runner.invoke(app, ["keys", "rotate-pii"])
    assert refused.exit_code == 1 and "nothing was changed" in refused.output.replace("\n", " ")
    engine.dispose()
