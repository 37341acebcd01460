"""Fixtures of the CRM tests: vendor fakes served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.crm.fakes.hubspot import HubSpotState, build_app
from tests.crm.fakes.server import serve
from tests.crm.test_hubspot import SEED_CONTACT_PROPERTIES, SEED_DEAL_PROPERTIES

HUBSPOT_TOKEN = "pat-na1-7f3c9e1d-secret"


@pytest.fixture
def hubspot() -> Iterator[tuple[HubSpotState, str]]:
    """A HubSpot account with seed 002's custom properties and a private-app token."""
    state = HubSpotState(
        custom_properties={"contacts": SEED_CONTACT_PROPERTIES, "deals": SEED_DEAL_PROPERTIES},
        private_app_token=HUBSPOT_TOKEN,
    )
    with serve(build_app(state)) as url:
        yield state, url
