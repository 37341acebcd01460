"""Salesforce REST API (``vendor-specs/salesforce/CONTRACT.md``).

* Authentication: ``POST /services/oauth2/token`` on the login host (the org's My Domain)
  with the client-credentials flow (consumer key and secret as HTTP Basic) or the JWT
  bearer flow (an RS256 assertion ``{iss, sub, aud, exp}`` signed with the connected app's
  private key). The answer names the ``instance_url`` every data call goes to and, in
  ``id``, the integration user. Neither flow has a refresh token: a 401
  ``INVALID_SESSION_ID`` is answered by one new token and the call is repeated once.
* Writes: sObject Collections, at most 200 records a request, ``allOrNone: false`` so a
  refused record fails alone. Upserts go to ``PATCH composite/sobjects/<SObject>/<ExtId>``
  keyed by the mapping's External ID field (Email cannot be an upsert key). Update-only
  first finds the ids by a SOQL ``IN`` on the External ID, because a collections update
  takes ids and nothing else; create-only is a collections ``POST``, where an existing
  External ID value is refused as ``DUPLICATE_VALUE``.
* Incremental reads: SOQL through ``queryAll`` (deleted records come back with
  ``IsDeleted``) on ``SystemModstamp >= since``, ascending, following ``nextRecordsUrl``.
  SOQL datetime literals carry whole seconds, so ``since`` is rounded down and records of
  that second may be read twice (harmless).
* Echo suppression: the collections answers carry no modified time; a record whose
  ``LastModifiedById`` is :attr:`Salesforce.user_id` is our own write read back.
* Limits: a daily, rolling 24-hour request allowance per org, reported on every answer as
  ``Sforce-Limit-Info: api-usage=N/M`` (kept in :attr:`Salesforce.api_usage`). Over it,
  Salesforce answers 403 ``REQUEST_LIMIT_EXCEEDED`` (there is no 429 and no
  ``Retry-After``), which becomes :class:`RateLimited` after ``limit_wait_s``; 5xx and
  transport failures become :class:`Unavailable`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import jwt

from revhub.crm.connectors.base import (
    Changes,
    CheckReport,
    ConnectorError,
    ObjectKind,
    RateLimited,
    Record,
    RowResult,
    Unauthorized,
    Unavailable,
    WriteMode,
    field_report,
    user_lookup,
    vendor_time,
)

LOGIN_URL = "https://login.salesforce.com"
API_VERSION = "v60.0"
BATCH_LIMIT = 200
PAGE_SIZE = 2000
MIN_PAGE_SIZE = 200
ALWAYS_SELECTED = ("Id", "SystemModstamp", "IsDeleted", "LastModifiedById")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 180
"""Salesforce refuses an assertion whose ``exp`` is more than three minutes away."""
LIMIT_WAIT_S = 60.0
"""The daily allowance is a rolling 24-hour count, so capacity comes back as old requests
age out of the window, and the concurrent-request limit (same error code) clears within
seconds. Salesforce says neither when: one minute re-probes cheaply without hammering."""
USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
ADVICE = {
    "invalid_client": "check the connected app's consumer key and secret",
    "invalid_client_id": "check the connected app's consumer key",
    "unsupported_grant_type": "enable this OAuth flow on the connected app",
}
GRANT_ADVICE = {
    "client_credentials": "check that the connected app enables the client credentials flow "
    "and names a run-as user",
    JWT_BEARER: "check the username, that the user is pre-authorized for the connected app "
    "and that the app's certificate matches the private key",
}


@dataclass(frozen=True)
class SalesforceAuth:
    """A connected app's consumer key with either its secret (client-credentials flow) or
    the integration user's username and the PEM private key whose certificate the app holds
    (JWT bearer flow). ``audience`` is the login server the assertion is for:
    ``https://test.salesforce.com`` for a sandbox."""

    client_id: str
    client_secret: str | None = None
    username: str | None = None
    private_key: str | None = None
    audience: str = LOGIN_URL

    def __post_init__(self) -> None:
        if not self.client_secret and not (self.username and self.private_key):
            raise ValueError(
                "Salesforce needs a client secret, or a username and private key for the "
                "JWT bearer flow"
            )

    @property
    def grant_type(self) -> str:
        return JWT_BEARER if self.private_key else "client_credentials"


@dataclass(frozen=True)
class _Session:
    access_token: str
    instance_url: str
    user_id: str


class Salesforce:
    name = "salesforce"

    batch_size = BATCH_LIMIT
    """The most rows one write call sends (rows per batch write call); the engine retries a
    rate-limited call whole, so it never hands a connector more than this at once."""

    def __init__(
        self,
        *,
        auth: SalesforceAuth,
        keys: dict[ObjectKind, str],
        objects: dict[ObjectKind, str] | None = None,
        fields: dict[ObjectKind, list[str]] | None = None,
        login_url: str = LOGIN_URL,
        page_size: int = PAGE_SIZE,
        limit_wait_s: float = LIMIT_WAIT_S,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.auth = auth
        self.keys = keys
        self.objects = objects or {"contact": "Lead", "deal": "Opportunity"}
        self._users: dict[str, str | None] = {}
        self.fields = fields or {}
        self.login_url = login_url.rstrip("/")
        self.page_size = min(max(page_size, MIN_PAGE_SIZE), PAGE_SIZE)
        self.limit_wait_s = limit_wait_s
        self.api_usage: tuple[int, int] | None = None
        """The org's requests in the last 24 hours and its allowance, as last reported."""
        self._session: _Session | None = None
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    @property
    def user_id(self) -> str:
        """The integration user's id (logging in if needed): the ``LastModifiedById`` of
        every record this connector writes."""
        return self._login().user_id

    def is_own_write(self, record: Record) -> bool:
        """Whether a pulled record was last changed by this connector (echo suppression)."""
        return record.fields.get("LastModifiedById") == self.user_id

    # --- the Connector protocol ----------------------------------------------------------

    def check(self, fields: dict[ObjectKind, Sequence[str]]) -> CheckReport:
        return field_report(fields, self._missing_fields)

    def _missing_fields(self, kind: ObjectKind, wanted: Sequence[str]) -> list[str]:
        described = self._call("GET", f"{self._data}/sobjects/{self.objects[kind]}/describe")
        return _missing(wanted, described.json()["fields"])

    def write(
        self, kind: ObjectKind, rows: Sequence[dict[str, Any]], mode: WriteMode = "upsert"
    ) -> list[RowResult]:
        results: list[RowResult] = []
        for start in range(0, len(rows), BATCH_LIMIT):
            batch = rows[start : start + BATCH_LIMIT]
            if mode == "update_only":
                results += self._update_batch(kind, batch)
            else:
                results += self._write_batch(kind, batch, mode)
        return results

    def update_by_id(
        self, kind: ObjectKind, rows: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RowResult]:
        """sObject Collections update (``PATCH composite/sobjects``) with record ids."""
        obj = self.objects[kind]
        results: list[RowResult] = []
        for start in range(0, len(rows), BATCH_LIMIT):
            batch = rows[start : start + BATCH_LIMIT]
            records = [_sobject(obj, fields) | {"id": crm_id} for crm_id, fields in batch]
            body = {"allOrNone": False, "records": records}
            answer = self._call("PATCH", f"{self._data}/composite/sobjects", json=body).json()
            results += [
                _row_result(crm_id, result | {"id": crm_id}, False)
                for (crm_id, _), result in zip(batch, answer, strict=True)
            ]
        return results

    def user_email(self, user_id: str) -> str | None:
        """The User sObject's ``Email``."""
        path = f"{self._data}/sobjects/User/{user_id}"
        return user_lookup(
            self._users,
            user_id,
            lambda user: self._call("GET", path, params={"fields": "Email"}).json().get("Email"),
        )

    def changes(self, kind: ObjectKind, since: datetime, cursor: str | None = None) -> Changes:
        headers = {"Sforce-Query-Options": f"batchSize={self.page_size}"}
        if cursor:
            answer = self._call("GET", cursor, headers=headers)
        else:
            soql = self._changes_soql(kind, since)
            answer = self._call(
                "GET", f"{self._data}/queryAll", params={"q": soql}, headers=headers
            )
        page = answer.json()
        records = [self._record(kind, item) for item in page["records"]]
        return Changes(records, None if page["done"] else page["nextRecordsUrl"])

    def delete(self, kind: ObjectKind, crm_ids: Sequence[str]) -> list[RowResult]:
        results: list[RowResult] = []
        for start in range(0, len(crm_ids), BATCH_LIMIT):
            ids = list(crm_ids[start : start + BATCH_LIMIT])
            params = {"ids": ",".join(ids), "allOrNone": "false"}
            answer = self._call("DELETE", f"{self._data}/composite/sobjects", params=params)
            results += [_deleted(i, r) for i, r in zip(ids, answer.json(), strict=True)]
        return results

    # --- the vendor's forms ---------------------------------------------------------------

    @property
    def _data(self) -> str:
        return f"/services/data/{API_VERSION}"

    def _write_batch(
        self, kind: ObjectKind, rows: Sequence[dict[str, Any]], mode: WriteMode
    ) -> list[RowResult]:
        obj, key = self.objects[kind], self.keys[kind]
        body = {"allOrNone": False, "records": [_sobject(obj, row) for row in rows]}
        if mode == "create_only":
            answer = self._call("POST", f"{self._data}/composite/sobjects", json=body)
        else:
            path = f"{self._data}/composite/sobjects/{obj}/{key}"
            answer = self._call("PATCH", path, json=body)
        created = mode == "create_only"
        return [
            _row_result(str(row.get(key, "")), result, created)
            for row, result in zip(rows, answer.json(), strict=True)
        ]

    def _update_batch(self, kind: ObjectKind, rows: Sequence[dict[str, Any]]) -> list[RowResult]:
        """A collections update takes record ids: find them by External ID first, and fail
        the rows that match no record (or several) instead of creating them."""
        obj, key = self.objects[kind], self.keys[kind]
        ids = self._ids_by_key(kind, [str(row.get(key, "")) for row in rows])
        found = [row for row in rows if len(ids.get(str(row.get(key, "")), [])) == 1]
        answered: dict[str, RowResult] = {}
        if found:
            records = [_sobject(obj, row) | {"id": ids[str(row[key])][0]} for row in found]
            body = {"allOrNone": False, "records": records}
            answer = self._call("PATCH", f"{self._data}/composite/sobjects", json=body).json()
            for row, result in zip(found, answer, strict=True):
                answered[str(row[key])] = _row_result(str(row[key]), result, False)
        return [
            answered.get(value) or _unmatched(obj, key, value, len(ids.get(value, [])))
            for value in (str(row.get(key, "")) for row in rows)
        ]

    def _ids_by_key(self, kind: ObjectKind, values: list[str]) -> dict[str, list[str]]:
        obj, key = self.objects[kind], self.keys[kind]
        wanted = ", ".join(_soql_text(v) for v in dict.fromkeys(values) if v)
        ids: dict[str, list[str]] = {}
        if not wanted:
            return ids
        soql = f"SELECT Id, {key} FROM {obj} WHERE {key} IN ({wanted})"  # noqa: S608 (quoted)
        page = self._call("GET", f"{self._data}/query", params={"q": soql}).json()
        while True:
            for item in page["records"]:
                ids.setdefault(str(item[key]), []).append(str(item["Id"]))
            if page["done"]:
                return ids
            page = self._call("GET", page["nextRecordsUrl"]).json()

    def _changes_soql(self, kind: ObjectKind, since: datetime) -> str:
        selected = dict.fromkeys([*ALWAYS_SELECTED, self.keys[kind], *self.fields.get(kind, [])])
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"SELECT {', '.join(selected)} FROM {self.objects[kind]} "  # noqa: S608 (no values)
            f"WHERE SystemModstamp >= {stamp} ORDER BY SystemModstamp"
        )

    def _record(self, kind: ObjectKind, item: dict[str, Any]) -> Record:
        fields = _flatten(item)
        key = fields.get(self.keys[kind])
        return Record(
            crm_id=str(item["Id"]),
            key=str(key) if key not in (None, "") else None,
            fields=fields,
            modified_at=_parse_time(item["SystemModstamp"]),
            deleted=bool(item.get("IsDeleted")),
        )

    # --- HTTP, errors, tokens ------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(self._login(), method, path, **kwargs)
        if response.status_code == 401:
            self._session = None
            response = self._send(self._login(), method, path, **kwargs)
        return self._checked(response)

    def _send(
        self,
        session: _Session,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {session.access_token}", **(headers or {})}
        try:
            response = self._http.request(
                method, session.instance_url + path, headers=headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"Salesforce did not answer {method} {path}: {exc}") from exc
        usage = USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if usage:
            self.api_usage = (int(usage[1]), int(usage[2]))
        return response

    def _login(self) -> _Session:
        if self._session is not None:
            return self._session
        try:
            response = self._http.post(
                f"{self.login_url}/services/oauth2/token", **self._token_request()
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"Salesforce's token endpoint did not answer: {exc}") from exc
        if response.status_code >= 500:
            raise Unavailable(f"Salesforce's token endpoint answered {response.status_code}")
        if response.status_code != 200:
            raise Unauthorized(self._refusal(response))
        body = response.json()
        self._session = _Session(
            access_token=body["access_token"],
            instance_url=body["instance_url"].rstrip("/"),
            user_id=str(body["id"]).rstrip("/").rsplit("/", 1)[-1],
        )
        return self._session

    def _token_request(self) -> dict[str, Any]:
        auth = self.auth
        if auth.grant_type == "client_credentials":
            return {
                "data": {"grant_type": "client_credentials"},
                "auth": (auth.client_id, auth.client_secret or ""),
            }
        claims = {
            "iss": auth.client_id,
            "sub": auth.username,
            "aud": auth.audience,
            "exp": int(time.time()) + JWT_LIFETIME_S,
        }
        assertion = jwt.encode(claims, auth.private_key or "", algorithm="RS256")
        return {"data": {"grant_type": JWT_BEARER, "assertion": assertion}}

    def _refusal(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = str(body.get("error", response.status_code)) if isinstance(body, dict) else ""
        described = body.get("error_description", "") if isinstance(body, dict) else ""
        advice = ADVICE.get(error) or GRANT_ADVICE[self.auth.grant_type]
        return (
            f"Salesforce refused the {self.auth.grant_type} login ({error}: {described}); {advice}"
        )

    def _checked(self, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status < 300:
            return response
        code, message = _error(response)
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            usage = (
                f" (api-usage {self.api_usage[0]}/{self.api_usage[1]})" if self.api_usage else ""
            )
            raise RateLimited(self.limit_wait_s, f"Salesforce API limit: {message}{usage}")
        if status == 401:
            raise Unauthorized(f"Salesforce refused a new session: {code} {message}")
        if status >= 500:
            raise Unavailable(f"Salesforce answered {status}: {code} {message}")
        error = ConnectorError(f"Salesforce answered {status}: {code} {message}")
        error.retryable = False
        raise error


def _error(response: httpx.Response) -> tuple[str, str]:
    """Salesforce errors are a JSON array of ``{message, errorCode, fields?}``."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    first = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict):
        return str(first.get("errorCode", "")), str(first.get("message", ""))
    return "", str(body)[:200]


def _missing(wanted: Sequence[str], described: list[dict[str, Any]]) -> list[str]:
    """Mapped fields the object lacks; a dotted field (``Owner.Email``) needs its
    relationship, and the related object's field is left to the first query."""
    names = {f["name"] for f in described}
    relationships = {f.get("relationshipName") for f in described} - {None}
    return sorted(
        name
        for name in set(wanted)
        if (name.split(".", 1)[0] not in relationships if "." in name else name not in names)
    )


def _sobject(obj: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": {"type": obj}, **{k: _json(v) for k, v in row.items()}}


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _row_result(key: str, result: dict[str, Any], create_only: bool) -> RowResult:
    if not result.get("success"):
        return RowResult(key=key, outcome="failed", error=_record_errors(result))
    created = bool(result.get("created", create_only))
    return RowResult(key=key, outcome="created" if created else "updated", crm_id=result["id"])


def _unmatched(obj: str, key: str, value: str, matches: int) -> RowResult:
    if matches > 1:
        error = f"{matches} {obj} records have {key}={value}; update-only cannot choose one"
    else:
        error = f"no {obj} has {key}={value}; update-only never creates records"
    return RowResult(key=value, outcome="failed", error=error)


def _deleted(crm_id: str, result: dict[str, Any]) -> RowResult:
    codes = {e.get("statusCode") for e in result.get("errors", [])}
    if result.get("success") or codes == {"ENTITY_IS_DELETED"}:
        return RowResult(key=crm_id, outcome="deleted", crm_id=crm_id)
    return RowResult(key=crm_id, outcome="failed", crm_id=crm_id, error=_record_errors(result))


def _record_errors(result: dict[str, Any]) -> str:
    parts = []
    for error in result.get("errors") or []:
        fields = f" ({', '.join(error['fields'])})" if error.get("fields") else ""
        parts.append(f"{error.get('statusCode')}: {error.get('message')}{fields}")
    return "; ".join(parts) or "Salesforce refused the record without saying why"


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A SOQL record in mapping names: relationship values (``Owner: {Email}``) become
    dotted fields (``Owner.Email``), and the ``attributes`` envelope goes."""
    fields: dict[str, Any] = {}
    for name, value in item.items():
        if name == "attributes":
            continue
        if isinstance(value, dict) and "attributes" in value:
            fields |= _flatten(value, f"{prefix}{name}.")
        else:
            fields[prefix + name] = value
    return fields


def _soql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_time(value: Any) -> datetime:
    """``SystemModstamp``, which every record carries."""
    parsed = vendor_time(value)
    if parsed is None:
        raise ConnectorError("Salesforce returned a record without SystemModstamp")
    return parsed
