"""The HubSpot connector against a fake that follows HubSpot's published contract."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from revhub.crm.connectors.base import RateLimited, Unauthorized, Unavailable, pages
from revhub.crm.connectors.hubspot import HubSpot, HubSpotAuth
from revhub.crm.mappings import default_mappings
from tests.crm.fakes.hubspot import HubSpotState, build_app
from tests.crm.fakes.server import serve

SEED_CONTACT_PROPERTIES = {
    "marketing_platform_id",
    "marketing_platform_lead_score",
    "first_conversion_date",
    "recent_conversion_date",
    "last_campaign_interaction",
}
SEED_DEAL_PROPERTIES = {
    "marketing_platform_id",
    "marketing_platform_campaign_id",
    "marketing_platform_lead_id",
}


@pytest.fixture
def state() -> HubSpotState:
    return HubSpotState(
        custom_properties={"contacts": SEED_CONTACT_PROPERTIES, "deals": SEED_DEAL_PROPERTIES},
        unique_properties={"contacts": {"email"}, "deals": {"marketing_platform_id"}},
    )


@pytest.fixture
def base_url(state: HubSpotState) -> Iterator[str]:
    with serve(build_app(state)) as url:
        yield url


def _connector(base_url: str, auth: HubSpotAuth | None = None, page_size: int = 200) -> HubSpot:
    auth = auth or HubSpotAuth(
        access_token="access-1",
        refresh_token="refresh-1",
        client_id="client",
        client_secret="secret",
    )
    return HubSpot(
        auth=auth,
        keys={"contact": "email", "deal": "marketing_platform_id"},
        base_url=base_url,
        page_size=page_size,
    )


def _contact(i: int, **extra: str) -> dict[str, str]:
    return {
        "email": f"person{i}@acme.example",
        "firstname": f"P{i}",
        "lastname": "Doe",
        "marketing_platform_id": f"lead-{i}",
        **extra,
    }


def test_upsert_by_email_in_batches_of_100_creates_then_updates(
    state: HubSpotState, base_url: str
) -> None:
    hubspot = _connector(base_url)
    first = hubspot.write("contact", [_contact(i) for i in range(150)])
    assert [r.outcome for r in first] == ["created"] * 150
    assert [c for c in state.calls if c[1].endswith("/batch/upsert")] == [
        ("POST", "/crm/v3/objects/contacts/batch/upsert")
    ] * 2
    again = hubspot.write("contact", [_contact(3, marketing_platform_lead_score="81")])
    assert again[0].outcome == "updated" and again[0].crm_id == first[3].crm_id
    held = state.objects["contacts"][first[3].crm_id]["properties"]
    assert held["marketing_platform_lead_score"] == "81" and held["firstname"] == "P3"
    assert again[0].modified_at is not None
    assert state.written[-1]["trace"] == "revhub:person3@acme.example"


def test_a_207_fails_only_the_refused_rows(state: HubSpotState, base_url: str) -> None:
    rows = [_contact(1), {"email": "not-an-email", "firstname": "X"}, _contact(2)]
    results = _connector(base_url).write("contact", rows)
    assert [r.outcome for r in results] == ["created", "failed", "created"]
    assert results[1].key == "not-an-email"
    assert results[1].error is not None and "VALIDATION_ERROR" in results[1].error
    assert len(state.objects["contacts"]) == 2


def test_an_unknown_property_is_a_row_failure_naming_it(base_url: str) -> None:
    results = _connector(base_url).write("contact", [_contact(1, no_such_field="x")])
    assert results[0].outcome == "failed" and "no_such_field" in (results[0].error or "")


def test_update_only_deals_never_create(state: HubSpotState, base_url: str) -> None:
    state.put("deals", {"dealname": "Big", "marketing_platform_id": "deal-1"}, at=datetime.now(UTC))
    results = _connector(base_url).write(
        "deal",
        [
            {"marketing_platform_id": "deal-1", "marketing_platform_campaign_id": "c-9"},
            {"marketing_platform_id": "deal-2", "marketing_platform_campaign_id": "c-9"},
        ],
        mode="update_only",
    )
    assert [r.outcome for r in results] == ["updated", "failed"]
    assert len(state.objects["deals"]) == 1


def test_a_429_says_how_long_to_wait_and_writes_nothing(state: HubSpotState, base_url: str) -> None:
    state.rate_limited_calls = 1
    hubspot = _connector(base_url)
    with pytest.raises(RateLimited) as limited:
        hubspot.write("contact", [_contact(1)])
    assert limited.value.retry_after == 10.0
    assert "ten_secondly_rolling" in str(limited.value)
    assert state.objects["contacts"] == {}
    assert hubspot.write("contact", [_contact(1)])[0].outcome == "created"


def test_an_expired_token_is_refreshed_once_and_the_row_written_once(
    state: HubSpotState, base_url: str
) -> None:
    hubspot = _connector(base_url)
    state.expire_access_token()
    results = hubspot.write("contact", [_contact(1)])
    assert results[0].outcome == "created"
    assert state.calls.count(("POST", "/oauth/v1/token")) == 1
    assert len(state.written) == 1
    assert state.access_token == "access-2"


def test_a_refused_refresh_is_unauthorized_with_what_to_do(
    state: HubSpotState, base_url: str
) -> None:
    state.refresh_token = "rotated-elsewhere"
    state.expire_access_token()
    with pytest.raises(Unauthorized, match="reconnect"):
        _connector(base_url).write("contact", [_contact(1)])
    assert state.written == []


def test_a_private_app_token_is_not_refreshed(state: HubSpotState, base_url: str) -> None:
    state.private_app_token = "pat-na1-123"
    hubspot = _connector(base_url, HubSpotAuth(access_token="pat-na1-123"))
    assert hubspot.write("contact", [_contact(1)])[0].outcome == "created"
    bad = _connector(base_url, HubSpotAuth(access_token="pat-wrong"))
    with pytest.raises(Unauthorized):
        bad.write("contact", [_contact(2)])
    assert ("POST", "/oauth/v1/token") not in state.calls


def test_a_hubspot_that_is_down_is_unavailable(state: HubSpotState, base_url: str) -> None:
    state.down = True
    with pytest.raises(Unavailable):
        _connector(base_url).write("contact", [_contact(1)])
    unreachable = _connector("http://127.0.0.1:9")
    with pytest.raises(Unavailable):
        unreachable.write("contact", [_contact(1)])


def test_changes_page_in_modified_order_from_the_time_asked(
    state: HubSpotState, base_url: str
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(450):
        state.put("contacts", _contact(i), at=start + timedelta(seconds=i))
    since = start + timedelta(seconds=50)
    found = list(pages(_connector(base_url), "contact", since))
    assert [r.key for r in found] == [f"person{i}@acme.example" for i in range(50, 450)]
    assert found[0].modified_at == since
    searches = [c for c in state.calls if c[1].endswith("/search")]
    assert len(searches) == 2  # 200 + 200 on two pages: 400 records


def test_changes_slice_time_past_the_10000_result_cap(state: HubSpotState, base_url: str) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(10_250):
        state.put("contacts", {"email": f"p{i}@acme.example"}, at=start + timedelta(seconds=i))
    found = {r.crm_id for r in pages(_connector(base_url), "contact", start)}
    assert len(found) == 10_250


def test_check_reports_missing_properties_and_bad_credentials(
    state: HubSpotState, base_url: str
) -> None:
    seed = default_mappings().of("hubspot")
    fields = {
        "contact": [f.crm for f in seed.contact.fields.values()],
        "deal": [f.crm for f in seed.deal.fields.values()],
    }
    report = _connector(base_url).check(fields)
    assert report.authenticated and report.missing_fields == {}
    state.custom_properties["deals"] = set()
    report = _connector(base_url).check(fields)
    assert report.missing_fields == {"deal": sorted(SEED_DEAL_PROPERTIES)}
    bad = _connector(base_url, HubSpotAuth(access_token="nope"))
    assert not bad.check(fields).authenticated


def test_delete_archives(state: HubSpotState, base_url: str) -> None:
    hubspot = _connector(base_url)
    made = hubspot.write("contact", [_contact(1), _contact(2)])
    gone = hubspot.delete("contact", [made[0].crm_id or ""])
    assert gone[0].outcome == "deleted"
    assert state.objects["contacts"][made[0].crm_id or ""]["archived"] is True
    assert [r.key for r in pages(hubspot, "contact", datetime(2000, 1, 1, tzinfo=UTC))] == [
        "person2@acme.example"
    ]


def test_an_owner_id_is_read_as_its_owners_email_once(state: HubSpotState, base_url: str) -> None:
    state.owners = {"501": "rita@revhub.example"}
    connector = _connector(base_url)
    assert connector.user_email("501") == "rita@revhub.example"
    assert connector.user_email("501") == "rita@revhub.example"
    assert connector.user_email("999") is None, "an owner HubSpot does not know"
    assert [c for c in state.calls if "/owners/" in c[1]] == [
        ("GET", "/crm/v3/owners/501"),
        ("GET", "/crm/v3/owners/999"),
    ]
