"""Pipedrive API v2 persons and deals (``vendor-specs/pipedrive/CONTRACT.md``).

* Authentication: an API token sent as the ``x-api-token`` header (the ``?api_token=``
  query parameter is legacy), or an OAuth access token sent as ``Authorization: Bearer``;
  with OAuth, a 401 is answered by one refresh through ``POST
  https://oauth.pipedrive.com/oauth/token`` (``grant_type=refresh_token``, the app's client
  id and secret as HTTP Basic) and the call is repeated once. The token answer's
  ``api_domain`` is the company's API host from then on, and its ``refresh_token`` replaces
  ours (Pipedrive may rotate it).
* Writes: Pipedrive has no upsert and no unique fields, so each row is looked up first with
  ``GET /api/v2/{persons|deals}/search`` (``exact_match=true``, ``fields=email`` for the
  ``emails`` key, ``fields=custom_fields`` for a ``custom_fields.<key>`` key), then created
  with ``POST /api/v2/{object}`` or changed with ``PATCH /api/v2/{object}/{id}``. Custom
  fields are sent as ``custom_fields: {key: value}``; a new person without a ``name`` gets
  one from its first and last names (``name`` is required). An update leaves the key out:
  it matched already, and PATCHing ``emails`` would replace every address the person has.
  Rows go one by one, so a 4xx fails its row alone; two records holding one key fail the
  row (merge them in Pipedrive) instead of writing to either. A rate limit or outage in the
  middle of a batch stops it: the rows already written are found again, not duplicated, when
  the batch is repeated.
* Incremental reads: ``GET /api/v2/{object}?updated_since=<RFC3339>&sort_by=update_time&
  sort_direction=asc``, at most 500 a page, following ``additional_data.next_cursor`` until
  it is null. Deals then list ``status=deleted`` the same way (deletions of the last 30
  days), flagged ``deleted``; the persons list holds no deleted persons, so their deletions
  reach the hub through webhooks only.
* Deletes: ``DELETE /api/v2/{object}/{id}``, one per record (v2 has no bulk delete); a
  record already gone counts as deleted.
* Limits: 429 becomes :class:`RateLimited`, waiting ``Retry-After`` or else
  ``x-ratelimit-reset`` (seconds to the end of the 2-second burst window); 5xx and
  transport failures become :class:`Unavailable`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from revhub.crm.connectors.base import (
    Changes,
    CheckReport,
    ConnectorError,
    ObjectKind,
    Outcome,
    RateLimited,
    Record,
    RowResult,
    TokenSink,
    Unauthorized,
    Unavailable,
    WriteMode,
    field_report,
    seconds_in,
    user_lookup,
    vendor_time,
)

BASE_URL = "https://api.pipedrive.com"
OAUTH_URL = "https://oauth.pipedrive.com/oauth/token"
API = "/api/v2"
PAGE_SIZE = 500
"""The most a v2 list page holds."""
SEARCH_LIMIT = 100
CUSTOM = "custom_fields."
SEARCH_FIELDS = {"emails": "email", "phones": "phone", "name": "name", "title": "title"}
"""The ``fields`` a search looks in, by our sync key (``custom_fields.*`` search
``custom_fields``)."""
FIELD_LISTS = {"persons": "personFields", "deals": "dealFields"}
WITH_DELETED = {"deals"}
"""Objects whose list answers ``status=deleted`` (deals deleted in the last 30 days)."""
DEFAULT_WAIT_S = 2.0
"""Pipedrive's burst window is two seconds: a 429 without headers waits one window."""


@dataclass(frozen=True)
class PipedriveAuth:
    """An API token (``api_token`` alone) or OAuth (access + refresh token and the app's
    client id and secret)."""

    api_token: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    oauth_url: str = OAUTH_URL
    """Where refresh tokens are exchanged (Pipedrive's OAuth server, not the API host)."""


class Refused(ConnectorError):
    """Pipedrive refused one request (a 4xx other than 401 and 429): in a write, that row
    fails alone."""

    retryable = False

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Pipedrive:
    name = "pipedrive"

    batch_size = 1
    """The most rows one write call sends (one record per call: no batch write); the engine
    retries a rate-limited call whole, so it never hands a connector more than this."""

    def __init__(
        self,
        *,
        auth: PipedriveAuth,
        keys: dict[ObjectKind, str],
        objects: dict[ObjectKind, str] | None = None,
        base_url: str = BASE_URL,
        page_size: int = PAGE_SIZE,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        on_tokens: TokenSink | None = None,
    ) -> None:
        if not (auth.api_token or auth.access_token):
            raise ValueError("Pipedrive needs an API token or an OAuth access token")
        for key in keys.values():
            _search_field(key)
        self.auth = auth
        self.keys = keys
        self.objects = objects or {"contact": "persons", "deal": "deals"}
        self._users: dict[str, str | None] = {}
        self.page_size = min(page_size, PAGE_SIZE)
        self._token = auth.access_token
        self._refresh_token = auth.refresh_token
        self._on_tokens = on_tokens
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    # --- the Connector protocol ----------------------------------------------------------

    def check(self, fields: dict[ObjectKind, Sequence[str]]) -> CheckReport:
        return field_report(
            fields,
            lambda kind, wanted: sorted(set(wanted) - self._field_names(self.objects[kind])),
        )

    def write(
        self, kind: ObjectKind, rows: Sequence[dict[str, Any]], mode: WriteMode = "upsert"
    ) -> list[RowResult]:
        made: dict[str, str] = {}
        return [self._write_row(kind, row, mode, made) for row in rows]

    def update_by_id(
        self, kind: ObjectKind, rows: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RowResult]:
        """``PATCH /api/v2/{object}/{id}``, one record per call (Pipedrive has no batch)."""
        obj = self.objects[kind]
        results: list[RowResult] = []
        for crm_id, fields in rows:
            try:
                item = self._call("PATCH", f"{API}/{obj}/{crm_id}", json=_body(fields)).json()
                results.append(_written(crm_id, "updated", item["data"]))
            except Refused as exc:
                results.append(_failed(crm_id, str(exc)))
        return results

    def user_email(self, user_id: str) -> str | None:
        """``GET /api/v1/users/{id}`` (users have no v2 endpoint)."""
        return user_lookup(
            self._users,
            user_id,
            lambda user: (self._call("GET", f"/api/v1/users/{user}").json()["data"] or {}).get(
                "email"
            ),
        )

    def changes(self, kind: ObjectKind, since: datetime, cursor: str | None = None) -> Changes:
        obj = self.objects[kind]
        place: dict[str, Any] = json.loads(cursor) if cursor else {"deleted": False}
        deleted = bool(place["deleted"])
        params: dict[str, Any] = {
            "updated_since": _rfc3339(since),
            "sort_by": "update_time",
            "sort_direction": "asc",
            "limit": self.page_size,
        }
        if place.get("after"):
            params["cursor"] = place["after"]
        if deleted:
            params["status"] = "deleted"
        page = self._call("GET", f"{API}/{obj}", params=params).json()
        records = [self._record(kind, item, deleted) for item in page.get("data") or []]
        following = (page.get("additional_data") or {}).get("next_cursor")
        return Changes(records, _next_place(obj, deleted, following))

    def delete(self, kind: ObjectKind, crm_ids: Sequence[str]) -> list[RowResult]:
        return [self._delete_one(self.objects[kind], crm_id) for crm_id in crm_ids]

    # --- the vendor's forms ---------------------------------------------------------------

    def _field_names(self, obj: str) -> set[str]:
        """Every field of ``obj`` as rows name it: standard fields by their ``field_code``,
        custom fields as ``custom_fields.<field_code>``."""
        path = f"{API}/{FIELD_LISTS.get(obj, obj.rstrip('s') + 'Fields')}"
        names: set[str] = set()
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        while True:
            page = self._call("GET", path, params=params).json()
            for spec in page.get("data") or []:
                code = str(spec["field_code"])
                names.add(CUSTOM + code if spec.get("is_custom_field") else code)
            following = (page.get("additional_data") or {}).get("next_cursor")
            if not following:
                return names
            params["cursor"] = following

    def _write_row(
        self, kind: ObjectKind, row: dict[str, Any], mode: WriteMode, made: dict[str, str]
    ) -> RowResult:
        obj, key = self.objects[kind], self.keys[kind]
        value = _key_text(row.get(key))
        if not value:
            return RowResult(key="", outcome="failed", error=f"the row has no {key}")
        try:
            found = made.get(_same(key, value)) or self._find(obj, key, value)
            refusal = _mode_refusal(obj, f"{key}={value}", found, mode)
            if refusal:
                return _failed(value, refusal)
            if found is None:
                item = self._call("POST", f"{API}/{obj}", json=_new_body(obj, row)).json()["data"]
                made[_same(key, value)] = str(item["id"])
                return _written(value, "created", item)
            body = _body({k: v for k, v in row.items() if k != key})
            item = self._call("PATCH", f"{API}/{obj}/{found}", json=body).json()["data"]
            return _written(value, "updated", item)
        except Refused as exc:
            return _failed(value, str(exc))

    def _find(self, obj: str, key: str, value: str) -> str | None:
        """The id of the one live record holding ``value`` in ``key``; search matches on any
        custom field, so a custom-field hit is read back to confirm it is ours."""
        params = {
            "term": value,
            "fields": _search_field(key),
            "exact_match": "true",
            "limit": SEARCH_LIMIT,
        }
        items = self._call("GET", f"{API}/{obj}/search", params=params).json()["data"]["items"]
        hits = [str(i["item"]["id"]) for i in items if self._holds(obj, key, value, i["item"])]
        if len(hits) > 1:
            raise Refused(
                f"{len(hits)} Pipedrive {obj} have {key}={value} (ids {', '.join(hits)}); "
                "merge them in Pipedrive"
            )
        return hits[0] if hits else None

    def _holds(self, obj: str, key: str, value: str, item: dict[str, Any]) -> bool:
        if key == "emails":
            return value.lower() in {str(e).lower() for e in item.get("emails") or []}
        record = self._call("GET", f"{API}/{obj}/{item['id']}").json()["data"]
        return _key_text(_flat(record).get(key)) == value

    def _delete_one(self, obj: str, crm_id: str) -> RowResult:
        try:
            self._call("DELETE", f"{API}/{obj}/{crm_id}")
        except Refused as exc:
            if exc.status != 404:
                return RowResult(key=crm_id, outcome="failed", crm_id=crm_id, error=str(exc))
        return RowResult(key=crm_id, outcome="deleted", crm_id=crm_id)

    def _record(self, kind: ObjectKind, item: dict[str, Any], deleted: bool) -> Record:
        fields = _flat(item)
        return Record(
            crm_id=str(item["id"]),
            key=_key_text(fields.get(self.keys[kind])) or None,
            fields=fields,
            modified_at=vendor_time(item.get("update_time")) or datetime.now(UTC),
            deleted=deleted or bool(item.get("is_deleted")),
        )

    # --- HTTP, errors, tokens ------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        if response.status_code == 401 and self._refresh_token:
            self._refresh()
            response = self._send(method, path, **kwargs)
        return _checked(response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._token:
            headers = {"Authorization": f"Bearer {self._token}"}
        else:
            headers = {"x-api-token": self.auth.api_token or ""}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"Pipedrive did not answer {method} {path}: {exc}") from exc

    def _refresh(self) -> None:
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token or ""}
        basic = (self.auth.client_id or "", self.auth.client_secret or "")
        try:
            response = self._http.post(self.auth.oauth_url, data=form, auth=basic)
        except httpx.HTTPError as exc:
            raise Unavailable(f"Pipedrive's token endpoint did not answer: {exc}") from exc
        if response.status_code != 200:
            raise Unauthorized(
                f"Pipedrive refused the refresh token ({response.status_code}): "
                f"{response.text[:200]}; reconnect the app and store new credentials"
            )
        answer = response.json()
        self._token = answer["access_token"]
        self._refresh_token = answer.get("refresh_token") or self._refresh_token
        if answer.get("api_domain"):
            self._http.base_url = httpx.URL(answer["api_domain"])
        if self._on_tokens is not None:
            kept = {"access_token": self._token, "refresh_token": self._refresh_token or ""}
            if answer.get("api_domain"):
                kept["api_domain"] = str(answer["api_domain"])
            self._on_tokens(kept)


def _checked(response: httpx.Response) -> httpx.Response:
    status = response.status_code
    if status < 300:
        return response
    message = _message(response)
    if status == 429:
        raise RateLimited(_wait_seconds(response), f"Pipedrive rate limit: {message}")
    if status == 401:
        raise Unauthorized(f"Pipedrive refused the credentials: {message}")
    if status >= 500:
        raise Unavailable(f"Pipedrive answered {status}: {message}")
    raise Refused(f"Pipedrive answered {status}: {message}", status)


def _wait_seconds(response: httpx.Response) -> float:
    waited = seconds_in(response.headers, "Retry-After", "x-ratelimit-reset")
    return DEFAULT_WAIT_S if waited is None else waited


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        parts = (body.get("error"), body.get("error_info"))
        return " ".join(str(p) for p in parts if p) or str(body)[:200]
    return str(body)[:200]


def _search_field(key: str) -> str:
    """What a search looks in to find ``key``; a key search cannot reach is a mistake."""
    if key.startswith(CUSTOM):
        return "custom_fields"
    if key not in SEARCH_FIELDS:
        raise ValueError(
            f"Pipedrive cannot search on {key!r}: use emails, phones, name, title or a "
            "custom_fields.<key> as the sync key"
        )
    return SEARCH_FIELDS[key]


def _new_body(obj: str, row: dict[str, Any]) -> dict[str, Any]:
    body = _body(row)
    if obj == "persons" and not body.get("name"):
        full = " ".join(str(row[k]) for k in ("first_name", "last_name") if row.get(k))
        body["name"] = full or _key_text(row.get("emails"))
    return body


def _body(row: dict[str, Any]) -> dict[str, Any]:
    """A row in Pipedrive's request form: ``custom_fields.<key>`` nested under
    ``custom_fields``, a bare e-mail address as a one-address ``emails`` list."""
    body: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in row.items():
        if name.startswith(CUSTOM):
            custom[name.removeprefix(CUSTOM)] = value
        elif name == "emails" and isinstance(value, str):
            body[name] = [{"value": value, "primary": True, "label": "work"}]
        else:
            body[name] = value
    if custom:
        body["custom_fields"] = custom
    return body


def _flat(item: dict[str, Any]) -> dict[str, Any]:
    """A record in CRM field names: its ``custom_fields`` as ``custom_fields.<key>``."""
    fields = {k: v for k, v in item.items() if k != "custom_fields"}
    for key, value in (item.get("custom_fields") or {}).items():
        fields[CUSTOM + key] = value
    return fields


def _next_place(obj: str, deleted: bool, following: str | None) -> str | None:
    if following:
        return json.dumps({"deleted": deleted, "after": following})
    if not deleted and obj in WITH_DELETED:
        return json.dumps({"deleted": True})
    return None


def _key_text(value: Any) -> str:
    """A sync key as text: the primary address (else the first) of an ``emails`` list."""
    if value is None:
        return ""
    if isinstance(value, list):
        entries = [e for e in value if isinstance(e, dict) and e.get("value")]
        primary = [e for e in entries if e.get("primary")] or entries
        return str(primary[0]["value"]) if primary else ""
    return str(value)


def _mode_refusal(obj: str, holding: str, found: str | None, mode: WriteMode) -> str | None:
    """Why ``mode`` forbids the write a lookup calls for, if it does."""
    if found is None and mode == "update_only":
        return f"no Pipedrive {obj} has {holding}; update_only never creates"
    if found is not None and mode == "create_only":
        return f"Pipedrive {obj} {found} already has {holding}; create_only never updates"
    return None


def _same(key: str, value: str) -> str:
    """A key value as Pipedrive compares it: e-mail addresses regardless of case."""
    return value.lower() if key == "emails" else value


def _written(key: str, outcome: Outcome, item: dict[str, Any]) -> RowResult:
    return RowResult(
        key=key,
        outcome=outcome,
        crm_id=str(item["id"]),
        modified_at=vendor_time(item.get("update_time")),
    )


def _failed(key: str, error: str) -> RowResult:
    return RowResult(key=key, outcome="failed", error=error)


def _rfc3339(at: datetime) -> str:
    """Pipedrive's times are whole seconds: ``since`` is rounded down, so nothing is
    missed (a record read twice is harmless)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
