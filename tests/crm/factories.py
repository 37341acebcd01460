"""Small builders for the CRM sync tests: a HubSpot connection on the fake, leads captured
through the API, a sleep that does not wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.settings import Settings
from revhub.crm import service
from revhub.crm.pull import pull
from revhub.crm.push import push_contacts
from revhub.crm.service import Target
from tests.crm.conftest import HUBSPOT_TOKEN
from tests.crm.fakes.hubspot import HubSpotState
from tests.sales.factories import SALES, Headers, created, lead_at, unique

LEADS = f"{SALES}/leads"
OPPS = f"{SALES}/opportunities"


OAUTH = {
    "access_token": "access-1",
    "refresh_token": "refresh-1",
    "client_id": "client",
    "client_secret": "secret",
}


def hubspot_target(
    db: Database, settings: Settings, url: str, credentials: dict[str, str] | None = None
) -> Target:
    box = service.credentials_box(settings)
    with db.transaction() as session:
        connection = service.add_connection(
            session,
            box,
            name=unique("hs"),
            crm="hubspot",
            credentials=credentials or {"access_token": HUBSPOT_TOKEN},
            base_url=url,
        )
    return service.open_target(connection, box)


def capture(client: TestClient, auth_headers: Headers, count: int) -> list[dict[str, str]]:
    """``count`` new leads through the bulk endpoint, each of a company of its own."""
    headers = auth_headers("sales")
    bodies = [
        lead_at(f"{unique('co')}.example", first_name="Grace", last_name="Hopper")
        for _ in range(count)
    ]
    answer = created(client.post(f"{LEADS}/bulk", json={"leads": bodies}, headers=headers), 200)
    results = [item["result"] for item in answer["results"]]
    return [
        {"email": body["email"], "lead_id": result["lead_id"]}
        for body, result in zip(bodies, results, strict=True)
    ]


def no_wait(seconds: float) -> None:
    """Tests do not sleep out a fake's rate limit; the run records the pause."""


def later(seconds: int = 60) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def plant_amount_conflict(
    client: TestClient,
    auth_headers: Headers,
    db: Database,
    settings: Settings,
    state: HubSpotState,
    url: str,
) -> tuple[Target, str]:
    """A deal pulled from HubSpot whose amount is then changed on both sides (hub 1500, CRM
    2000): an open conflict on a critical field. Returns the target and the opportunity id."""
    (person,) = capture(client, auth_headers, 1)
    target = hubspot_target(db, settings, url)
    pii = pii_for(settings)
    push_contacts(db, pii, target, trigger="manual")
    deal = state.put(
        "deals",
        {
            "dealname": "Pilot",
            "amount": "1000",
            "dealstage": "qualifiedtobuy",
            "marketing_platform_lead_id": person["lead_id"],
        },
        at=later(1),
    )
    pull(db, pii, target, "deal", trigger="manual")
    sales = auth_headers("sales")
    (opp,) = [
        d for d in created(client.get(OPPS, headers=sales), 200)["items"] if d["name"] == "Pilot"
    ]
    created(client.patch(f"{OPPS}/{opp['id']}", json={"amount": "1500"}, headers=sales), 200)
    state.edit("deals", deal["id"], {"amount": "2000"}, at=later(120))
    pull(db, pii, target, "deal", trigger="manual")
    return target, opp["id"]
