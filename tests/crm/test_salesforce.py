"""The Salesforce connector against a fake org that follows Salesforce's published contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from revhub.crm.connectors.base import ObjectKind, RateLimited, Unauthorized, Unavailable, pages
from revhub.crm.connectors.salesforce import Salesforce, SalesforceAuth
from revhub.crm.mappings import default_mappings
from tests.crm.fakes.salesforce import INTEGRATION_USER, SalesforceState, build_app
from tests.crm.fakes.server import serve

DATA = "/services/data/v60.0"
TOKEN = ("POST", "/services/oauth2/token")
UPSERT_LEADS = ("PATCH", f"{DATA}/composite/sobjects/Lead/Marketing_Platform_ID__c")
KEY = "Marketing_Platform_ID__c"
SEED_CUSTOM_FIELDS = {
    "Lead": {KEY, "Lead_Score__c", "Campaign_ID__c"},
    "Opportunity": {KEY, "Marketing_Lead_ID__c"},
}


@pytest.fixture
def state() -> SalesforceState:
    return SalesforceState(
        custom_fields={k: set(v) for k, v in SEED_CUSTOM_FIELDS.items()},
        external_ids={"Lead": {KEY}, "Opportunity": {KEY}},
    )


@pytest.fixture
def base_url(state: SalesforceState) -> Iterator[str]:
    with serve(build_app(state)) as url:
        yield url


def _connector(
    base_url: str, auth: SalesforceAuth | None = None, page_size: int = 2000
) -> Salesforce:
    return Salesforce(
        auth=auth or SalesforceAuth(client_id="consumer-key", client_secret="consumer-secret"),
        keys={"contact": KEY, "deal": KEY},
        fields={"contact": ["Email", "LastName", "Owner.Email"], "deal": ["Name"]},
        login_url=base_url,
        page_size=page_size,
    )


def _lead(i: int, **extra: Any) -> dict[str, Any]:
    return {
        KEY: f"lead-{i}",
        "Email": f"person{i}@acme.example",
        "FirstName": f"P{i}",
        "LastName": "Doe",
        "Company": "Acme",
        **extra,
    }


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def test_upsert_by_external_id_in_chunks_of_200_creates_then_updates(
    state: SalesforceState, base_url: str
) -> None:
    salesforce = _connector(base_url)
    first = salesforce.write("contact", [_lead(i) for i in range(250)])
    assert [r.outcome for r in first] == ["created"] * 250
    assert [r.key for r in first[:2]] == ["lead-0", "lead-1"]
    assert [c for c in state.calls if c == UPSERT_LEADS] == [UPSERT_LEADS] * 2
    again = salesforce.write("contact", [_lead(3, Lead_Score__c=81)])
    assert again[0].outcome == "updated" and again[0].crm_id == first[3].crm_id
    held = state.objects["Lead"][first[3].crm_id or ""]
    assert held["Lead_Score__c"] == 81 and held["FirstName"] == "P3"
    assert held["LastModifiedById"] == salesforce.user_id == INTEGRATION_USER
    assert len(state.objects["Lead"]) == 250
    assert salesforce.api_usage == (state.api_used, 5000)


def test_refused_records_fail_alone_with_salesforce_error_codes(
    state: SalesforceState, base_url: str
) -> None:
    rows = [
        _lead(1),
        _lead(2, Email="not-an-email"),
        {KEY: "lead-3", "LastName": "Doe"},
        _lead(4, No_Such_Field__c="x"),
        _lead(5),
    ]
    results = _connector(base_url).write("contact", rows)
    assert [r.outcome for r in results] == ["created", "failed", "failed", "failed", "created"]
    assert [r.key for r in results] == [f"lead-{i}" for i in range(1, 6)]
    assert "INVALID_EMAIL_ADDRESS" in (results[1].error or "")
    assert "REQUIRED_FIELD_MISSING" in (results[2].error or "")
    assert "Company" in (results[2].error or "")
    assert "INVALID_FIELD" in (results[3].error or "")
    assert "No_Such_Field__c" in (results[3].error or "")
    assert {r[KEY] for r in state.objects["Lead"].values()} == {"lead-1", "lead-5"}


def test_update_only_deals_never_create(state: SalesforceState, base_url: str) -> None:
    held = state.put(
        "Opportunity",
        {KEY: "deal-1", "Name": "Big", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
        at=datetime.now(UTC),
    )
    results = _connector(base_url).write(
        "deal",
        [{KEY: "deal-1", "Name": "Bigger"}, {KEY: "deal-2", "Name": "New"}],
        mode="update_only",
    )
    assert [r.outcome for r in results] == ["updated", "failed"]
    assert results[0].crm_id == held["Id"]
    assert "never creates" in (results[1].error or "")
    assert len(state.objects["Opportunity"]) == 1
    assert state.objects["Opportunity"][held["Id"]]["Name"] == "Bigger"
    assert ("PATCH", f"{DATA}/composite/sobjects") in state.calls
    assert not any(c[1].endswith("/Opportunity/Marketing_Platform_ID__c") for c in state.calls)


def test_create_only_refuses_an_existing_external_id(state: SalesforceState, base_url: str) -> None:
    salesforce = _connector(base_url)
    salesforce.write("contact", [_lead(1)])
    results = salesforce.write("contact", [_lead(1, FirstName="Other"), _lead(2)], "create_only")
    assert [r.outcome for r in results] == ["failed", "created"]
    assert "DUPLICATE_VALUE" in (results[0].error or "")
    assert [r["FirstName"] for r in state.objects["Lead"].values()] == ["P1", "P2"]


def test_request_limit_exceeded_is_rate_limited_and_writes_nothing(
    state: SalesforceState, base_url: str
) -> None:
    state.limit_exceeded_calls = 1
    salesforce = _connector(base_url)
    with pytest.raises(RateLimited) as limited:
        salesforce.write("contact", [_lead(1)])
    assert limited.value.retry_after == 60.0
    assert "TotalRequests Limit exceeded" in str(limited.value)
    assert salesforce.api_usage == (5000, 5000)
    assert state.objects["Lead"] == {}
    assert salesforce.write("contact", [_lead(1)])[0].outcome == "created"


def test_an_expired_session_is_renewed_once_and_the_row_written_once(
    state: SalesforceState, base_url: str
) -> None:
    salesforce = _connector(base_url)
    salesforce.write("contact", [_lead(1)])
    state.expire_sessions()
    results = salesforce.write("contact", [_lead(2)])
    assert results[0].outcome == "created"
    assert state.calls.count(TOKEN) == 2
    assert [w["fields"][KEY] for w in state.written] == ["lead-1", "lead-2"]
    assert state.calls.count(UPSERT_LEADS) == 3  # one refused with 401, two written


def test_a_bad_client_secret_is_unauthorized_with_what_to_do(
    state: SalesforceState, base_url: str
) -> None:
    auth = SalesforceAuth(client_id="consumer-key", client_secret="wrong")
    with pytest.raises(Unauthorized, match="consumer key and secret"):
        _connector(base_url, auth).write("contact", [_lead(1)])
    assert state.written == []
    report = _connector(base_url, auth).check({"contact": ["Email"]})
    assert not report.authenticated and "invalid_client" in report.detail


def test_a_salesforce_that_is_down_is_unavailable(state: SalesforceState, base_url: str) -> None:
    state.down = True
    with pytest.raises(Unavailable):
        _connector(base_url).write("contact", [_lead(1)])
    with pytest.raises(Unavailable):
        _connector("http://127.0.0.1:9").write("contact", [_lead(1)])
    assert state.written == []


def test_the_jwt_bearer_flow_signs_in_with_the_private_key(
    state: SalesforceState, base_url: str
) -> None:
    private, public = _rsa_pair()
    state.public_key = public
    auth = SalesforceAuth(
        client_id="consumer-key", username="integration@acme.example", private_key=private
    )
    salesforce = _connector(base_url, auth)
    assert salesforce.write("contact", [_lead(1)])[0].outcome == "created"
    assert salesforce.user_id == INTEGRATION_USER
    other_key, _ = _rsa_pair()
    forged = SalesforceAuth(
        client_id="consumer-key", username="integration@acme.example", private_key=other_key
    )
    with pytest.raises(Unauthorized, match="pre-authorized"):
        _connector(base_url, forged).write("contact", [_lead(2)])
    stranger = SalesforceAuth(
        client_id="consumer-key", username="someone@acme.example", private_key=private
    )
    with pytest.raises(Unauthorized, match="hasn't approved"):
        _connector(base_url, stranger).write("contact", [_lead(3)])
    assert len(state.written) == 1


def test_changes_page_through_next_records_url_in_modstamp_order_with_deletions(
    state: SalesforceState, base_url: str
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    made = [state.put("Lead", _lead(i), at=start + timedelta(seconds=i)) for i in range(450)]
    state.remove("Lead", made[60]["Id"], at=start + timedelta(seconds=500))
    since = start + timedelta(seconds=50)
    found = list(pages(_connector(base_url, page_size=200), "contact", since))
    expected = [f"lead-{i}" for i in range(50, 450) if i != 60] + ["lead-60"]
    assert [r.key for r in found] == expected
    assert found[0].modified_at == since
    assert [r.key for r in found if r.deleted] == ["lead-60"]
    assert found[0].fields["Owner.Email"] == "sam@acme.example"
    assert [c[1] for c in state.calls if "/query" in c[1]] == [
        f"{DATA}/queryAll",
        f"{DATA}/query/01g8c0000000001AAA-200",
    ]


def test_own_writes_read_back_are_recognised_by_the_last_modifier(
    state: SalesforceState, base_url: str
) -> None:
    salesforce = _connector(base_url)
    state.put("Lead", _lead(1), at=datetime.now(UTC) - timedelta(seconds=1))
    salesforce.write("contact", [_lead(2)])
    pulled = {r.key: r for r in pages(salesforce, "contact", datetime(2000, 1, 1, tzinfo=UTC))}
    assert not salesforce.is_own_write(pulled["lead-1"])
    assert salesforce.is_own_write(pulled["lead-2"])


def test_check_reports_missing_fields_of_the_seed_mapping(
    state: SalesforceState, base_url: str
) -> None:
    seed = default_mappings().of("salesforce")
    fields: dict[ObjectKind, Sequence[str]] = {
        "contact": [f.crm for f in seed.contact.fields.values()],
        "deal": [f.crm for f in seed.deal.fields.values()],
    }
    report = _connector(base_url).check(fields)
    assert report.authenticated and report.missing_fields == {}
    state.custom_fields["Opportunity"] = set()
    state.custom_fields["Lead"] = {KEY}
    report = _connector(base_url).check(fields)
    assert report.missing_fields == {
        "contact": ["Campaign_ID__c", "Lead_Score__c"],
        "deal": sorted(SEED_CUSTOM_FIELDS["Opportunity"]),
    }
    assert _connector(base_url).check({"deal": ["Manager.Email"]}).missing_fields == {
        "deal": ["Manager.Email"]
    }


def test_delete_moves_records_to_the_recycle_bin_200_at_a_time(
    state: SalesforceState, base_url: str
) -> None:
    salesforce = _connector(base_url)
    made = salesforce.write("contact", [_lead(i) for i in range(250)])
    ids = [r.crm_id or "" for r in made[:201]]
    gone = salesforce.delete("contact", [*ids, ids[0], "00Q8c9999999999AAA"])
    assert [r.outcome for r in gone] == ["deleted"] * 202 + ["failed"]
    assert "INVALID_CROSS_REFERENCE_KEY" in (gone[-1].error or "")
    assert state.calls.count(("DELETE", f"{DATA}/composite/sobjects")) == 2
    assert all(state.objects["Lead"][i]["IsDeleted"] for i in ids)
    assert len(state.live("Lead")) == 49
    updated = salesforce.write("contact", [_lead(0)], mode="update_only")
    assert updated[0].outcome == "failed"
