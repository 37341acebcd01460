"""The real-time CRM path with real processes: a lead captured over HTTP by a running
`revhub serve` (embedded worker) reaches HubSpot by itself, while another connection's
CRM hangs without answering."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.crm.conftest import HUBSPOT_TOKEN, hubspot  # noqa: F401 (the fixture)
from tests.crm.fakes.hubspot import HubSpotState
from tests.e2e.conftest import Server, revhub_cli
from tests.sales.factories import lead_at

HANG_SECONDS = 6.0


class _Hanging(BaseHTTPRequestHandler):
    """A CRM that takes every request and answers nothing for a long while."""

    def _hang(self) -> None:
        time.sleep(HANG_SECONDS)
        self.send_response(503)
        self.end_headers()

    do_GET = do_POST = do_PATCH = _hang  # noqa: N815 (the server's method names)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def hanging_crm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_captured_lead_reaches_hubspot_while_another_crm_hangs(
    start_server: type[Server],
    hub_env: dict[str, str],
    hubspot: tuple[HubSpotState, str],  # noqa: F811 (the fixture imported above)
    hanging_crm: str,
) -> None:
    state, url = hubspot
    server = start_server()
    server.wait_ready()
    token = re.search(
        r"rhk_[A-Za-z0-9_-]+",
        revhub_cli(hub_env, "keys", "create", "--name", "ops", "--role", "admin"),
    )
    assert token
    admin = {"X-API-Key": token.group(0)}
    for name, base_url in (("stuck", hanging_crm), ("hs", url)):
        body = {
            "name": name,
            "crm": "hubspot",
            "base_url": base_url,
            "credentials": {"access_token": HUBSPOT_TOKEN},
        }
        made = httpx.post(f"{server.url}/api/v1/crm/connections", json=body, headers=admin)
        assert made.status_code == 201, made.text
    lead = lead_at("e2e-crm.example", "ada")
    captured = httpx.post(f"{server.url}/api/v1/integrations/sales/leads", json=lead, headers=admin)
    assert captured.status_code == 201, captured.text
    deadline = time.monotonic() + HANG_SECONDS - 1
    while time.monotonic() < deadline and state.find("contacts", "email", lead["email"]) is None:
        time.sleep(0.1)
    stored = state.find("contacts", "email", lead["email"])
    assert stored is not None, "the lead did not reach HubSpot while the other CRM hung"
    assert stored["properties"]["marketing_platform_id"] == captured.json()["lead_id"]
    runs = httpx.get(
        f"{server.url}/api/v1/crm/runs", params={"connection": "hs"}, headers=admin
    ).json()
    assert [(r["trigger"], r["counts"]) for r in runs] == [("realtime", {"created": 1})]
