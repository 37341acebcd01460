"""Small builders for the CRM sync tests: a connection on each vendor's fake, leads captured
through the API, a sleep that does not wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import pii_for
from revhub.core.db import Database
from revhub.core.settings import Settings
from revhub.crm import service
from revhub.crm.models import FailedRow
from revhub.crm.pull import pull
from revhub.crm.push import push_contacts
from revhub.crm.service import Target
from tests.crm.conftest import HUBSPOT_TOKEN, PIPEDRIVE_TOKEN, SALESFORCE_APP
from tests.crm.fakes.hubspot import HubSpotState
from tests.sales.factories import (
    CONTACTS,
    SALES,
    Headers,
    contact_by_email,
    created,
    lead_at,
    unique,
)

LEADS = f"{SALES}/leads"
OPPS = f"{SALES}/opportunities"


OAUTH = {
    "access_token": "access-1",
    "refresh_token": "refresh-1",
    "client_id": "client",
    "client_secret": "secret",
}


def crm_target(
    db: Database, settings: Settings, crm: str, url: str, credentials: dict[str, str]
) -> Target:
    """A new connection of ``crm`` on the fake at ``url``, opened for a sync."""
    box = service.credentials_box(settings)
    with db.transaction() as session:
        connection = service.add_connection(
            session,
            box,
            name=unique(crm[:2]),
            crm=crm,
            credentials=credentials,
            base_url=url,
        )
    return service.open_target(
        connection, box, service.mappings_for(settings), db, pii_for(settings)
    )


def hubspot_target(
    db: Database, settings: Settings, url: str, credentials: dict[str, str] | None = None
) -> Target:
    return crm_target(db, settings, "hubspot", url, credentials or {"access_token": HUBSPOT_TOKEN})


def salesforce_target(
    db: Database, settings: Settings, url: str, credentials: dict[str, str] | None = None
) -> Target:
    """A Salesforce connection logging in at ``url`` (the fake's "My Domain")."""
    return crm_target(db, settings, "salesforce", url, credentials or SALESFORCE_APP)


def pipedrive_target(
    db: Database, settings: Settings, url: str, credentials: dict[str, str] | None = None
) -> Target:
    """A Pipedrive connection with the API token, or ``credentials`` (e.g.
    :func:`pipedrive_oauth`)."""
    return crm_target(db, settings, "pipedrive", url, credentials or {"api_token": PIPEDRIVE_TOKEN})


def pipedrive_oauth(url: str) -> dict[str, str]:
    """OAuth credentials for the Pipedrive fake, whose token endpoint it serves itself."""
    return OAUTH | {"oauth_url": f"{url}/oauth/token"}


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


def won_deal_of(client: TestClient, auth_headers: Headers, email: str) -> dict[str, Any]:
    """Check that the person with ``email`` is now a customer; their one won opportunity
    (as the sales API shows it)."""
    sales = auth_headers("sales")
    found = contact_by_email(client, sales, email)
    profile = created(client.get(f"{CONTACTS}/{found['id']}", headers=sales), 200)
    assert profile["stage"] == "customer"
    deals = created(client.get(OPPS, headers=sales), 200)["items"]
    (deal,) = [d for d in deals if d["primary_contact_id"] == found["id"]]
    assert deal["is_closed_won"] and deal["stage"] == "Closed Won"
    return deal


def webinar_attendee(client: TestClient, auth_headers: Headers, campaign: str) -> dict[str, str]:
    """A new lead who attended the webinar campaign ``campaign`` (made here) three days ago."""
    sales = auth_headers("sales")
    body = {"key": campaign, "name": campaign.title(), "channel": "webinar"}
    created(client.post(f"{SALES}/campaigns", json=body, headers=sales))
    (person,) = capture(client, auth_headers, 1)
    touch = {
        "email": person["email"],
        "campaign": campaign,
        "channel": "webinar",
        "kind": "webinar_attendance",
        "occurred_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
    }
    created(client.post(f"{SALES}/touchpoints", json=touch, headers=sales))
    return person


def failed_rows(session: Session, target: Target) -> list[FailedRow]:
    """The connection's failed-row index as the database holds it now."""
    session.expire_all()
    return list(
        session.scalars(select(FailedRow).where(FailedRow.connection_id == target.connection_id))
    )
