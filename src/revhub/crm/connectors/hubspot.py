"""HubSpot CRM v3 (``vendor-specs/hubspot/CONTRACT.md``).

* Authentication: a private-app token or an OAuth access token, both sent as
  ``Authorization: Bearer``; with OAuth, a 401 is answered by one refresh through
  ``POST /oauth/v1/token`` (``grant_type=refresh_token``) and the call is repeated once.
* Writes: ``batch/upsert`` (or ``batch/update`` / ``batch/create`` for the update-only and
  create-only modes) keyed by the mapping's unique property (``email`` for contacts), at
  most 100 inputs a request. A 207 answers row by row: the rows in ``errors`` fail alone.
  Every input carries ``objectWriteTraceId`` so HubSpot's change events name our writes.
* Incremental reads: ``search`` on ``lastmodifieddate`` (contacts) / ``hs_lastmodifieddate``
  (deals), ascending, 200 a page. Search stops at 10,000 results, so when a slice would
  page past that the next slice starts at the last modified time read (records at that
  very millisecond are read again; reading a record twice is harmless).
* Limits: 429 (``RATE_LIMIT``) becomes :class:`RateLimited`, waiting ``Retry-After`` or
  else the ``X-HubSpot-RateLimit-Interval-Milliseconds`` window; 5xx and transport
  failures become :class:`Unavailable`.
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

BASE_URL = "https://api.hubapi.com"
BATCH_LIMIT = 100
PAGE_SIZE = 200
SEARCH_CAP = 10_000
MODIFIED = {"contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}
ACTIONS: dict[WriteMode, str] = {
    "upsert": "upsert",
    "update_only": "update",
    "create_only": "create",
}
DEFAULT_WAIT_S = 10.0
"""HubSpot's burst window is ten seconds: a 429 without headers waits one window."""


@dataclass(frozen=True)
class HubSpotAuth:
    """A private-app token (``access_token`` alone) or OAuth (access + refresh token and
    the app's client id and secret)."""

    access_token: str
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class HubSpot:
    name = "hubspot"

    batch_size = BATCH_LIMIT
    """The most rows one write call sends (rows per batch write call); the engine retries a
    rate-limited call whole, so it never hands a connector more than this at once."""

    def __init__(
        self,
        *,
        auth: HubSpotAuth,
        keys: dict[ObjectKind, str],
        objects: dict[ObjectKind, str] | None = None,
        base_url: str = BASE_URL,
        page_size: int = PAGE_SIZE,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        on_tokens: TokenSink | None = None,
    ) -> None:
        self.auth = auth
        self._on_tokens = on_tokens
        self.keys = keys
        self.objects = objects or {"contact": "contacts", "deal": "deals"}
        self._users: dict[str, str | None] = {}
        self.page_size = page_size
        self._token = auth.access_token
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    # --- the Connector protocol ----------------------------------------------------------

    def check(self, fields: dict[ObjectKind, Sequence[str]]) -> CheckReport:
        return field_report(fields, self._missing)

    def write(
        self, kind: ObjectKind, rows: Sequence[dict[str, Any]], mode: WriteMode = "upsert"
    ) -> list[RowResult]:
        results: list[RowResult] = []
        for start in range(0, len(rows), BATCH_LIMIT):
            results += self._write_batch(kind, rows[start : start + BATCH_LIMIT], mode)
        return results

    def update_by_id(
        self, kind: ObjectKind, rows: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RowResult]:
        """``batch/update`` without ``idProperty``: the ids are HubSpot's record ids."""
        path = f"/crm/v3/objects/{self.objects[kind]}/batch/update"
        results: list[RowResult] = []
        for start in range(0, len(rows), BATCH_LIMIT):
            batch = rows[start : start + BATCH_LIMIT]
            inputs = [
                {"id": crm_id, "properties": {k: _text(v) for k, v in fields.items()}}
                for crm_id, fields in batch
            ]
            answer = self._call("POST", path, json={"inputs": inputs}).json()
            done = {
                str(r["id"]): RowResult(
                    key=str(r["id"]),
                    outcome="updated",
                    crm_id=str(r["id"]),
                    modified_at=_parse_time(r.get("updatedAt")),
                )
                for r in answer.get("results", [])
            }
            results += [_row_result(crm_id, "id", done, _errors(answer)) for crm_id, _ in batch]
        return results

    def user_email(self, user_id: str) -> str | None:
        """The CRM Owners API: ``GET /crm/v3/owners/{id}``."""
        return user_lookup(
            self._users,
            user_id,
            lambda owner: self._call("GET", f"/crm/v3/owners/{owner}").json().get("email"),
        )

    def changes(self, kind: ObjectKind, since: datetime, cursor: str | None = None) -> Changes:
        obj = self.objects[kind]
        modified = MODIFIED.get(obj, "hs_lastmodifieddate")
        window = json.loads(cursor) if cursor else {"since": _ms(since), "after": 0}
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": modified, "operator": "GTE", "value": str(window["since"])}
                    ]
                }
            ],
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "limit": self.page_size,
            "after": str(window["after"]),
        }
        page = self._call("POST", f"/crm/v3/objects/{obj}/search", json=body).json()
        records = [self._record(kind, modified, item) for item in page["results"]]
        following = (page.get("paging") or {}).get("next", {}).get("after")
        return Changes(records, self._next_window(window, following, records))

    def delete(self, kind: ObjectKind, crm_ids: Sequence[str]) -> list[RowResult]:
        obj = self.objects[kind]
        for start in range(0, len(crm_ids), BATCH_LIMIT):
            inputs = [{"id": i} for i in crm_ids[start : start + BATCH_LIMIT]]
            self._call("POST", f"/crm/v3/objects/{obj}/batch/archive", json={"inputs": inputs})
        return [RowResult(key=i, outcome="deleted", crm_id=i) for i in crm_ids]

    # --- the vendor's forms ---------------------------------------------------------------

    def _missing(self, kind: ObjectKind, wanted: Sequence[str]) -> list[str]:
        answer = self._call("GET", f"/crm/v3/properties/{self.objects[kind]}")
        return sorted(set(wanted) - {p["name"] for p in answer.json()["results"]})

    def _write_batch(
        self, kind: ObjectKind, rows: Sequence[dict[str, Any]], mode: WriteMode
    ) -> list[RowResult]:
        key = self.keys[kind]
        inputs = []
        for row in rows:
            item: dict[str, Any] = {
                "properties": {k: _text(v) for k, v in row.items()},
                "objectWriteTraceId": f"revhub:{row[key]}",
            }
            if mode != "create_only":
                item |= {"id": str(row[key]), "idProperty": key}
            inputs.append(item)
        path = f"/crm/v3/objects/{self.objects[kind]}/batch/{ACTIONS[mode]}"
        answer = self._call("POST", path, json={"inputs": inputs}).json()
        done: dict[str, RowResult] = {}
        for result in answer.get("results", []):
            value = str(result["properties"].get(key) or "")
            done[value.lower() if key == "email" else value] = RowResult(
                key=value,
                outcome="created" if result.get("new", mode == "create_only") else "updated",
                crm_id=str(result["id"]),
                modified_at=_parse_time(result.get("updatedAt")),
            )
        return [_row_result(row[key], key, done, _errors(answer)) for row in rows]

    def _record(self, kind: ObjectKind, modified: str, item: dict[str, Any]) -> Record:
        props = item.get("properties") or {}
        stamp = props.get(modified) or item.get("updatedAt")
        return Record(
            crm_id=str(item["id"]),
            key=props.get(self.keys[kind]) or None,
            fields=props,
            modified_at=_parse_time(stamp) or datetime.now(UTC),
            deleted=bool(item.get("archived")),
        )

    def _next_window(
        self, window: dict[str, int], following: str | None, records: list[Record]
    ) -> str | None:
        """Page on inside the slice while search allows; past its cap, a new slice from the
        last time read."""
        if following is None or not records:
            return None
        if int(following) + self.page_size <= SEARCH_CAP:
            return json.dumps({"since": window["since"], "after": int(following)})
        last = _ms(records[-1].modified_at)
        if last <= window["since"]:
            raise ConnectorError(
                f"more than {SEARCH_CAP} HubSpot records share the modified time {last} ms; "
                "the search API cannot page through them"
            )
        return json.dumps({"since": last, "after": 0})

    # --- HTTP, errors, tokens ------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        if response.status_code == 401 and self.auth.refresh_token:
            self._refresh()
            response = self._send(method, path, **kwargs)
        return _checked(response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"HubSpot did not answer {method} {path}: {exc}") from exc

    def _refresh(self) -> None:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.auth.client_id or "",
            "client_secret": self.auth.client_secret or "",
            "refresh_token": self.auth.refresh_token or "",
        }
        try:
            response = self._http.post("/oauth/v1/token", data=form)
        except httpx.HTTPError as exc:
            raise Unavailable(f"HubSpot's token endpoint did not answer: {exc}") from exc
        if response.status_code != 200:
            raise Unauthorized(
                f"HubSpot refused the refresh token ({response.status_code}): "
                f"{response.text[:200]}; reconnect the app and store new credentials"
            )
        answer = response.json()
        self._token = answer["access_token"]
        if self._on_tokens is not None:
            kept = {"access_token": self._token}
            if answer.get("refresh_token"):
                kept["refresh_token"] = answer["refresh_token"]
            self._on_tokens(kept)


def _checked(response: httpx.Response) -> httpx.Response:
    status = response.status_code
    if status < 300:
        return response
    message = _message(response)
    if status == 429:
        raise RateLimited(_wait_seconds(response), f"HubSpot rate limit: {message}")
    if status == 401:
        raise Unauthorized(f"HubSpot refused the credentials: {message}")
    if status >= 500:
        raise Unavailable(f"HubSpot answered {status}: {message}")
    error = ConnectorError(f"HubSpot answered {status}: {message}")
    error.retryable = False
    raise error


def _wait_seconds(response: httpx.Response) -> float:
    waited = seconds_in(response.headers, "Retry-After")
    if waited is not None:
        return waited
    interval = seconds_in(response.headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
    return interval / 1000 if interval is not None else DEFAULT_WAIT_S


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        kind = body.get("category") or body.get("errorType") or ""
        return f"{kind} {body.get('message', '')}".strip()
    return str(body)[:200]


def _row_result(
    value: Any, key: str, done: dict[str, RowResult], failed: dict[str, str]
) -> RowResult:
    text = str(value)
    found = done.get(text.lower() if key == "email" else text)
    if found is not None:
        return found
    return RowResult(key=text, outcome="failed", error=failed.get(text, "HubSpot gave no result"))


def _errors(answer: dict[str, Any]) -> dict[str, str]:
    """A 207's errors by the input id each names (``context.id``)."""
    failed: dict[str, str] = {}
    for error in answer.get("errors", []):
        for value in (error.get("context") or {}).get("id", []):
            failed[str(value)] = f"{error.get('category')}: {error.get('message')}"
    return failed


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _parse_time(value: Any) -> datetime | None:
    """HubSpot writes times as ISO 8601, or as epoch milliseconds in date properties."""
    if isinstance(value, str) and value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return vendor_time(value)
