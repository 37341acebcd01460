"""`revhub demo` builds a believable company through the services, once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from revhub.cli import app
from revhub.contacts.models import Contact, StageChange
from revhub.core.db import make_engine
from revhub.sales.models import Campaign, Touchpoint


def test_demo_fills_the_hub_then_refuses_to_fill_it_twice(
    tmp_path: Path, scratch_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REVHUB_DATABASE_URL", scratch_database_url)
    monkeypatch.setenv("COLUMNS", "300")
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--people", "150", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert re.search(r"40 campaigns, 150 leads, \d+ touchpoints", first.output)
    assert re.search(r"rhk_[A-Za-z0-9_-]+", first.output)
    engine = make_engine(scratch_database_url)
    with Session(engine) as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(Campaign) == 40
        assert count(Touchpoint) > 150 * 3
        live = select(func.count()).select_from(Contact).where(Contact.merged_into_id.is_(None))
        assert session.scalar(live) == 150
        mqls = select(func.count()).select_from(StageChange).where(StageChange.to_stage == "mql")
        assert (session.scalar(mqls) or 0) >= 1
        first_touch = session.scalar(select(func.min(Touchpoint.occurred_at)))
        last_touch = session.scalar(select(func.max(Touchpoint.occurred_at)))
        assert first_touch and last_touch and (last_touch - first_touch).days > 200
    engine.dispose()
    again = runner.invoke(app, ["demo", "--people", "150", "--no-serve"])
    assert again.exit_code == 0 and "already here" in again.output
