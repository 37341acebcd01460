"""The Pipedrive connector against a fake that follows Pipedrive's published contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from revhub.crm.connectors.base import ObjectKind, RateLimited, Unauthorized, Unavailable, pages
from revhub.crm.connectors.pipedrive import Pipedrive, PipedriveAuth
from revhub.crm.mappings import default_mappings
from tests.crm.fakes.pipedrive import PipedriveState, build_app
from tests.crm.fakes.server import serve

SEED_PERSON_FIELDS = {
    "marketing_platform_id": "varchar",
    "marketing_platform_lead_score": "double",
    "marketing_platform_source": "varchar",
    "marketing_platform_campaign_id": "varchar",
}
SEED_DEAL_FIELDS = {"marketing_platform_id": "varchar", "marketing_platform_campaign_id": "varchar"}
SEARCH = "/api/v2/persons/search"


@pytest.fixture
def state() -> PipedriveState:
    return PipedriveState(
        custom_fields={"persons": dict(SEED_PERSON_FIELDS), "deals": dict(SEED_DEAL_FIELDS)}
    )


@pytest.fixture
def base_url(state: PipedriveState) -> Iterator[str]:
    with serve(build_app(state)) as url:
        yield url


def _oauth(base_url: str) -> PipedriveAuth:
    return PipedriveAuth(
        access_token="access-1",
        refresh_token="refresh-1",
        client_id="client",
        client_secret="secret",
        oauth_url=f"{base_url}/oauth/token",
    )


def _connector(base_url: str, auth: PipedriveAuth | None = None, page_size: int = 500) -> Pipedrive:
    return Pipedrive(
        auth=auth or PipedriveAuth(api_token="api-token-1"),
        keys={"contact": "emails", "deal": "custom_fields.marketing_platform_id"},
        base_url=base_url,
        page_size=page_size,
    )


def _emails(address: str) -> list[dict[str, Any]]:
    return [{"value": address, "primary": True, "label": "work"}]


def _person(i: int, **extra: Any) -> dict[str, Any]:
    """A row as the mapping renders it: CRM field names, ``emails`` as Pipedrive's list."""
    return {
        "emails": _emails(f"person{i}@acme.example"),
        "first_name": f"P{i}",
        "last_name": "Doe",
        "custom_fields.marketing_platform_id": f"lead-{i}",
        **extra,
    }


def _writes(state: PipedriveState, method: str) -> list[dict[str, Any]]:
    return [w for w in state.written if w["method"] == method]


def test_a_write_creates_then_finds_and_patches_the_same_email(
    state: PipedriveState, base_url: str
) -> None:
    pipedrive = _connector(base_url)
    first = pipedrive.write("contact", [_person(1)])
    assert first[0].outcome == "created" and first[0].key == "person1@acme.example"
    again = pipedrive.write(
        "contact",
        [_person(1, first_name="Pat", **{"custom_fields.marketing_platform_lead_score": 81})],
    )
    assert again[0].outcome == "updated" and again[0].crm_id == first[0].crm_id
    assert len(state.objects["persons"]) == 1
    held = state.objects["persons"][int(first[0].crm_id or 0)]
    assert held["first_name"] == "Pat" and held["name"] == "Pat Doe"
    assert held["custom_fields"]["marketing_platform_lead_score"] == 81
    assert [w["method"] for w in state.written] == ["POST", "PATCH"]
    assert "emails" not in _writes(state, "PATCH")[0]["body"]
    assert state.calls.count(("GET", SEARCH)) == 2
    assert again[0].modified_at == held["update_time"]


def test_a_new_person_is_named_from_first_and_last_name(
    state: PipedriveState, base_url: str
) -> None:
    made = _connector(base_url).write("contact", [_person(7)])
    assert state.objects["persons"][int(made[0].crm_id or 0)]["name"] == "P7 Doe"


def test_the_email_match_ignores_case(state: PipedriveState, base_url: str) -> None:
    pipedrive = _connector(base_url)
    made = pipedrive.write("contact", [_person(1)])
    shouting = pipedrive.write("contact", [_person(1, emails=_emails("PERSON1@ACME.EXAMPLE"))])
    assert shouting[0].outcome == "updated" and shouting[0].crm_id == made[0].crm_id
    assert len(state.objects["persons"]) == 1


def test_a_key_repeated_in_one_batch_is_created_once(state: PipedriveState, base_url: str) -> None:
    results = _connector(base_url).write("contact", [_person(1), _person(1, first_name="Again")])
    assert [r.outcome for r in results] == ["created", "updated"]
    assert len(state.objects["persons"]) == 1
    assert state.calls.count(("GET", SEARCH)) == 1


def test_a_refused_row_fails_alone(state: PipedriveState, base_url: str) -> None:
    rows = [_person(1), _person(2, **{"custom_fields.no_such_field": "x"}), _person(3)]
    results = _connector(base_url).write("contact", rows)
    assert [r.outcome for r in results] == ["created", "failed", "created"]
    assert results[1].key == "person2@acme.example"
    assert "400" in (results[1].error or "") and "no_such_field" in (results[1].error or "")
    assert len(state.objects["persons"]) == 2


def test_two_persons_with_one_email_fail_the_row_instead_of_guessing(
    state: PipedriveState, base_url: str
) -> None:
    at = datetime.now(UTC)
    for name in ("Twin A", "Twin B"):
        state.put("persons", {"name": name, "emails": _emails("twin@acme.example")}, at=at)
    results = _connector(base_url).write(
        "contact", [_person(1, emails=_emails("twin@acme.example"))]
    )
    assert results[0].outcome == "failed" and "merge" in (results[0].error or "")
    assert state.written == []


def test_update_only_deals_never_create(state: PipedriveState, base_url: str) -> None:
    at = datetime.now(UTC)
    state.put(
        "deals",
        {"title": "Other", "custom_fields": {"marketing_platform_campaign_id": "deal-1"}},
        at=at,
    )
    ours = state.put(
        "deals", {"title": "Big", "custom_fields": {"marketing_platform_id": "deal-1"}}, at=at
    )
    results = _connector(base_url).write(
        "deal",
        [
            {
                "custom_fields.marketing_platform_id": "deal-1",
                "custom_fields.marketing_platform_campaign_id": "c-9",
            },
            {
                "custom_fields.marketing_platform_id": "deal-2",
                "custom_fields.marketing_platform_campaign_id": "c-9",
            },
        ],
        mode="update_only",
    )
    assert [r.outcome for r in results] == ["updated", "failed"]
    assert results[0].crm_id == str(ours["id"])
    assert "update_only" in (results[1].error or "")
    assert len(state.objects["deals"]) == 2
    assert _writes(state, "POST") == []
    assert ours["custom_fields"]["marketing_platform_campaign_id"] == "c-9"


def test_create_only_never_updates(state: PipedriveState, base_url: str) -> None:
    pipedrive = _connector(base_url)
    pipedrive.write("contact", [_person(1)])
    results = pipedrive.write(
        "contact", [_person(1, first_name="Changed"), _person(2)], mode="create_only"
    )
    assert [r.outcome for r in results] == ["failed", "created"]
    assert "create_only" in (results[0].error or "")
    assert _writes(state, "PATCH") == []


def test_a_429_says_how_long_to_wait_and_writes_nothing(
    state: PipedriveState, base_url: str
) -> None:
    state.rate_limited_calls = 1
    state.rate_limit_reset = 7
    pipedrive = _connector(base_url)
    with pytest.raises(RateLimited) as limited:
        pipedrive.write("contact", [_person(1)])
    assert limited.value.retry_after == 7.0
    assert "Request over limit" in str(limited.value)
    assert state.objects["persons"] == {}
    assert pipedrive.write("contact", [_person(1)])[0].outcome == "created"


def test_an_expired_token_is_refreshed_once_and_the_row_written_once(
    state: PipedriveState, base_url: str
) -> None:
    pipedrive = _connector(base_url, _oauth(base_url))
    state.expire_access_token()
    results = pipedrive.write("contact", [_person(1)])
    assert results[0].outcome == "created"
    assert state.calls.count(("POST", "/oauth/token")) == 1
    assert len(state.written) == 1
    assert state.access_token == "access-2"


def test_a_refused_refresh_is_unauthorized_with_what_to_do(
    state: PipedriveState, base_url: str
) -> None:
    state.refresh_token = "rotated-elsewhere"
    state.expire_access_token()
    with pytest.raises(Unauthorized, match="reconnect"):
        _connector(base_url, _oauth(base_url)).write("contact", [_person(1)])
    assert state.written == []


def test_a_bad_api_token_is_unauthorized_and_never_refreshed(
    state: PipedriveState, base_url: str
) -> None:
    bad = _connector(base_url, PipedriveAuth(api_token="wrong"))
    with pytest.raises(Unauthorized, match="unauthorized access"):
        bad.write("contact", [_person(1)])
    assert ("POST", "/oauth/token") not in state.calls
    assert state.objects["persons"] == {}


def test_a_pipedrive_that_is_down_is_unavailable(state: PipedriveState, base_url: str) -> None:
    state.down = True
    with pytest.raises(Unavailable, match="503"):
        _connector(base_url).write("contact", [_person(1)])
    with pytest.raises(Unavailable):
        _connector("http://127.0.0.1:9").write("contact", [_person(1)])


def test_changes_page_with_cursors_in_update_order_from_the_time_asked(
    state: PipedriveState, base_url: str
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in reversed(range(450)):
        fields = {"name": f"P{i}", "emails": _emails(f"person{i}@acme.example")}
        state.put("persons", fields, at=start + timedelta(seconds=i))
    since = start + timedelta(seconds=50)
    found = list(pages(_connector(base_url, page_size=200), "contact", since))
    assert [r.key for r in found] == [f"person{i}@acme.example" for i in range(50, 450)]
    assert found[0].modified_at == since
    assert found[0].fields["custom_fields.marketing_platform_id"] is None
    lists = [c for c in state.calls if c == ("GET", "/api/v2/persons")]
    assert len(lists) == 2


def test_deal_changes_end_with_the_deleted_deals(state: PipedriveState, base_url: str) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    kept = state.put(
        "deals", {"title": "Kept", "custom_fields": {"marketing_platform_id": "d-1"}}, at=at
    )
    gone = state.put(
        "deals", {"title": "Gone", "custom_fields": {"marketing_platform_id": "d-2"}}, at=at
    )
    gone["is_deleted"] = True
    found = list(pages(_connector(base_url), "deal", at - timedelta(minutes=1)))
    assert [(r.crm_id, r.key, r.deleted) for r in found] == [
        (str(kept["id"]), "d-1", False),
        (str(gone["id"]), "d-2", True),
    ]


def test_check_reports_missing_custom_fields_and_bad_credentials(
    state: PipedriveState, base_url: str
) -> None:
    seed = default_mappings().of("pipedrive")
    fields: dict[ObjectKind, Sequence[str]] = {
        "contact": [f.crm for f in seed.contact.fields.values()],
        "deal": [f.crm for f in seed.deal.fields.values()],
    }
    report = _connector(base_url).check(fields)
    assert report.authenticated and report.missing_fields == {}
    state.custom_fields["deals"] = {}
    report = _connector(base_url).check(fields)
    assert report.missing_fields == {
        "deal": [
            "custom_fields.marketing_platform_campaign_id",
            "custom_fields.marketing_platform_id",
        ]
    }
    bad = _connector(base_url, PipedriveAuth(api_token="nope"))
    assert not bad.check(fields).authenticated


def test_delete_removes_by_id_and_an_already_gone_record_counts_as_deleted(
    state: PipedriveState, base_url: str
) -> None:
    pipedrive = _connector(base_url)
    made = pipedrive.write("contact", [_person(1), _person(2)])
    first = made[0].crm_id or ""
    gone = pipedrive.delete("contact", [first, first])
    assert [r.outcome for r in gone] == ["deleted", "deleted"]
    assert state.objects["persons"][int(first)]["is_deleted"] is True
    assert state.calls.count(("DELETE", f"/api/v2/persons/{first}")) == 2
    assert [r.key for r in pages(pipedrive, "contact", datetime(2000, 1, 1, tzinfo=UTC))] == [
        "person2@acme.example"
    ]


def test_an_owner_id_is_read_as_its_users_email_once(state: PipedriveState, base_url: str) -> None:
    state.users = {7: "rita@revhub.example"}
    connector = _connector(base_url)
    assert connector.user_email("7") == "rita@revhub.example"
    assert connector.user_email("7") == "rita@revhub.example"
    assert connector.user_email("8") is None, "a user Pipedrive does not know"
    assert [c for c in state.calls if "/users/" in c[1]] == [
        ("GET", "/api/v1/users/7"),
        ("GET", "/api/v1/users/8"),
    ]
