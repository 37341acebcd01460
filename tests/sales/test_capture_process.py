"""Single leads captured in a child process (``REVHUB_CAPTURE_PROCESS``, the default), through
the HTTP API as a client sends them. The child commits for real, so these tests use a
scratch database of their own."""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from revhub.api import create_app
from revhub.core.audit import service as audit
from revhub.core.audit.models import AuditEntry
from revhub.core.db import Database
from revhub.core.errors import FieldError, InvalidInput, RevHubError
from revhub.core.events import outbox
from revhub.core.observability import REGISTRY
from revhub.core.settings import Settings
from revhub.migrations import upgrade
from revhub.sales.capture_process import STOPPED, CaptureProcess, CaptureUnavailable, portable
from revhub.sales.models import Lead
from tests.factories import ApiKeyFactory
from tests.sales.factories import created, lead_at, problem, rep, territory, unique

URL = "/api/v1/integrations/sales/leads"


@pytest.fixture
def served(
    scratch_database_url: str, scratch_db: Database, settings: Settings
) -> Iterator[tuple[TestClient, Database, dict[str, str], Settings]]:
    """The API on a scratch database, capturing in a child process."""
    with scratch_db.transaction() as session:
        _key, token = ApiKeyFactory(session).create(role="sales")
    settings = settings.model_copy(
        update={"database_url": scratch_database_url, "capture_process": True}
    )
    app = create_app(settings, db=scratch_db, check_schema=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, scratch_db, {"X-API-Key": token}, settings


def _child(client: TestClient) -> int:
    """The pid of the capture process serving ``client``'s app."""
    process = client.app.state.lead_capture_queue.process  # type: ignore[attr-defined]
    assert isinstance(process, CaptureProcess)
    assert process.pid is not None
    return process.pid


def test_leads_are_captured_by_a_child_process_each_with_its_answer(
    served: tuple[TestClient, Database, dict[str, str], Settings],
) -> None:
    client, db, headers, settings = served
    child = _child(client)
    assert child != os.getpid()
    news = outbox.NEWS.generation
    timed = REGISTRY.get_sample_value("revhub_lead_capture_batch_seconds_count") or 0.0
    bodies = [lead_at(f"{unique('p')}.example") for _ in range(20)]

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda b: client.post(URL, json=b, headers=headers), bodies))

    results = [created(a) for a in answers]
    assert len({r["lead_id"] for r in results}) == 20
    assert all(r["steps"]["crm"]["status"] == "queued_for_crm_sync" for r in results)
    assert outbox.NEWS.generation > news  # this process's consumers hear of the commits
    assert (REGISTRY.get_sample_value("revhub_lead_capture_batch_seconds_count") or 0) > timed
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 20
        audited = set(session.scalars(select(AuditEntry.resource_id)))
        assert {r["lead_id"] for r in results} <= audited
        assert audit.verify(session, key=settings.secrets["audit_key"]).ok


def test_the_child_sees_the_team_as_the_api_process_changes_it(
    served: tuple[TestClient, Database, dict[str, str], Settings],
) -> None:
    """The child keeps the team between batches (``core.reference``); a rep deactivated and
    a territory added through the API decide the child's next assignments."""
    client, _db, headers, _settings = served
    sweden = territory(client, headers, name=unique("Sweden "), countries=["SE"])
    first, second = (rep(client, headers, sweden["id"]) for _ in range(2))

    def owner() -> str:
        body = lead_at(f"{unique('se')}.example", country="SE")
        rep_id: str = created(client.post(URL, json=body, headers=headers))["steps"]["assignment"][
            "rep_id"
        ]
        return rep_id

    assert owner() == first["id"]
    change = client.patch(
        f"/api/v1/integrations/sales/reps/{first['id']}", json={"active": False}, headers=headers
    )
    assert change.status_code == 200, change.text
    assert owner() == second["id"]  # a stale team would say the first: tied, and older
    north = territory(client, headers, name=unique("North "), countries=["SE"], priority=0)
    third = rep(client, headers, north["id"])
    assert owner() == third["id"]


def test_a_refused_lead_is_a_422_naming_its_field_and_leaves_nothing(
    served: tuple[TestClient, Database, dict[str, str], Settings],
) -> None:
    client, db, headers, _ = served
    bad = lead_at(f"{unique('p')}.example") | {"email": "not-an-address"}

    fields = problem(client.post(URL, json=bad, headers=headers))

    assert fields == ["body.email"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


def test_a_dead_child_is_replaced_before_the_next_lead(
    served: tuple[TestClient, Database, dict[str, str], Settings],
) -> None:
    client, _db, headers, _ = served
    first = _child(client)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(first):
        time.sleep(0.05)

    answer = client.post(URL, json=lead_at(f"{unique('p')}.example"), headers=headers)

    created(answer)
    assert _child(client) != first


def test_a_lead_in_hand_when_the_child_dies_is_answered_503_send_again(
    served: tuple[TestClient, Database, dict[str, str], Settings],
) -> None:
    client, db, headers, _ = served
    child = _child(client)
    created(client.post(URL, json=lead_at(f"{unique('p')}.example"), headers=headers))
    with ThreadPoolExecutor(1) as pool, db.transaction() as blocker:
        blocker.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        sent = pool.submit(
            client.post, URL, json=lead_at(f"{unique('p')}.example"), headers=headers
        )
        time.sleep(1.0)  # the child has the lead and waits for the database
        os.kill(child, signal.SIGKILL)
        time.sleep(0.5)
    answer = sent.result(timeout=30)  # (its audit entry waited for the blocker to end)

    problem(answer, 503)
    assert answer.json()["type"].endswith(STOPPED)
    assert answer.headers["retry-after"] == "1"
    created(client.post(URL, json=lead_at(f"{unique('p')}.example"), headers=headers))


def test_the_child_exits_with_the_api(scratch_database_url: str, settings: Settings) -> None:
    upgrade(scratch_database_url)
    settings = settings.model_copy(
        update={"database_url": scratch_database_url, "capture_process": True}
    )
    with TestClient(create_app(settings, check_schema=False)) as client:
        child = _child(client)
        assert _alive(child)
    assert not _alive(child)


def test_a_child_that_cannot_start_says_why_and_how_to_do_without(
    settings: Settings, tmp_path: Path
) -> None:
    nowhere = f"sqlite:///{tmp_path / 'missing-directory' / 'revhub.db'}"
    process = CaptureProcess(settings.model_copy(update={"database_url": nowhere}))

    with pytest.raises(CaptureUnavailable) as refused:
        process.start()

    assert "could not start" in str(refused.value)
    assert "unable to open database file" in str(refused.value)  # SQLite's own words
    assert "REVHUB_CAPTURE_PROCESS=false" in str(refused.value)
    assert process.pid is None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_problems_cross_the_pipe_whole_and_bugs_by_name() -> None:
    """What the child sends, pickled as the pipe does (our own objects, not untrusted
    input)."""
    refused = InvalidInput([FieldError("body.email", "not an e-mail address", "email")])

    crossed = pickle.loads(pickle.dumps(portable(refused)))  # noqa: S301
    bug = pickle.loads(pickle.dumps(portable(KeyError("lead_id"))))  # noqa: S301

    assert isinstance(crossed, RevHubError)
    assert (crossed.status, crossed.type, crossed.detail) == (422, refused.type, refused.detail)
    assert crossed.errors == refused.errors
    assert isinstance(bug, RuntimeError)
    assert "KeyError" in str(bug)
