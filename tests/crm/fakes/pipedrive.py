"""A small Pipedrive API v2 that follows ``vendor-specs/pipedrive/CONTRACT.md``, for the
connector's tests: persons and deals with integer ids and whole-second ``update_time``
stamps, ``custom_fields`` keyed by field key, the ``/search`` endpoints (``term``,
``fields``, ``exact_match``), lists with ``updated_since`` / ``sort_by`` and
``additional_data.next_cursor`` (deals also ``status=deleted``), the person and deal field
lists, PATCH and DELETE by id, the API token (``x-api-token`` header, legacy ``api_token``
query parameter) and OAuth with its refresh, and the 429 (``x-ratelimit-*`` headers,
``{success: false, error}`` body), 401 and 404 answers in Pipedrive's envelopes. Tests
steer it through :class:`PipedriveState` (expire a token, answer the next calls with 429,
go down) and read what it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

API = "/api/v2"
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
DELETED_KEPT = timedelta(days=30)
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
FIELD_LISTS = {"personFields": "persons", "dealFields": "deals"}
STANDARD_FIELDS = {
    "persons": {
        "name": "varchar",
        "first_name": "varchar",
        "last_name": "varchar",
        "owner_id": "user",
        "org_id": "org",
        "emails": "varchar",
        "phones": "phone",
        "visible_to": "visible_to",
        "label_ids": "set",
        "add_time": "date",
        "update_time": "date",
    },
    "deals": {
        "title": "varchar",
        "owner_id": "user",
        "person_id": "people",
        "org_id": "org",
        "pipeline_id": "double",
        "stage_id": "stage",
        "value": "monetary",
        "currency": "varchar",
        "status": "status",
        "won_time": "date",
        "lost_time": "date",
        "close_time": "date",
        "expected_close_date": "date",
        "probability": "double",
        "lost_reason": "varchar",
        "add_time": "date",
        "update_time": "date",
    },
}
READ_ONLY = {"id", "add_time", "update_time", "is_deleted"}
REQUIRED = {"persons": "name", "deals": "title"}
SEARCH_FIELDS = {
    "persons": {"email", "name", "phone", "notes", "custom_fields"},
    "deals": {"custom_fields", "notes", "title"},
}
STATUSES = {"open", "won", "lost", "deleted"}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class PipedriveState:
    """What the fake holds and how it misbehaves; safe to change from the test thread.

    ``custom_fields`` maps each object to its custom field keys and their field types
    (``varchar``, ``double``...)."""

    custom_fields: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"persons": {}, "deals": {}}
    )
    objects: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {"persons": {}, "deals": {}}
    )
    api_token: str | None = "api-token-1"
    access_token: str = "access-1"
    refresh_token: str = "refresh-1"
    rotate_refresh_tokens: bool = False
    """Issue a new refresh token with every refresh; the one used stops working."""
    client_id: str = "client"
    client_secret: str = "secret"
    expired_tokens: set[str] = field(default_factory=set)
    users: dict[int, str] = field(default_factory=dict)
    """The company's users (record owners): user id -> e-mail (``GET /api/v1/users/{id}``)."""
    rate_limited_calls: int = 0
    rate_limit_reset: int = 2
    down: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    written: list[dict[str, Any]] = field(default_factory=list)
    clock: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0
    _by_email: dict[str, tuple[dict[int, Any], dict[str, set[int]]]] = field(
        default_factory=dict, repr=False
    )
    """:meth:`with_email`'s index per object, for companies of tens of thousands of persons
    (``bench/crm_sync.py``): the records dict indexed and the ids by lower-cased
    address. ``put`` and ``edit`` keep it: change ``emails`` through them."""

    def now(self) -> datetime:
        """Pipedrive's clock, in whole seconds; a set ``clock`` ticks a second a call."""
        if self.clock is None:
            return datetime.now(UTC).replace(microsecond=0)
        self.clock += timedelta(seconds=1)
        return self.clock

    def expire_access_token(self) -> None:
        self.expired_tokens.add(self.access_token)

    def put(self, obj: str, fields: dict[str, Any], *, at: datetime) -> dict[str, Any]:
        """A record as a user would make it in Pipedrive (for pull tests)."""
        self._serial += 1
        record: dict[str, Any] = {
            **dict.fromkeys(STANDARD_FIELDS[obj]),
            **({"emails": [], "phones": [], "label_ids": []} if obj == "persons" else {}),
            **({"status": "open"} if obj == "deals" else {}),
            **{k: v for k, v in fields.items() if k != "custom_fields"},
            "id": self._serial,
            "add_time": at,
            "update_time": at,
            "is_deleted": False,
            "custom_fields": dict.fromkeys(self.custom_fields.get(obj, {})),
        }
        record["custom_fields"].update(fields.get("custom_fields") or {})
        self.objects[obj][record["id"]] = record
        self._index_emails(obj, record)
        return record

    def edit(self, obj: str, record_id: int, fields: dict[str, Any], *, at: datetime) -> None:
        record = self.objects[obj][record_id]
        record.update({k: v for k, v in fields.items() if k != "custom_fields"})
        record["custom_fields"].update(fields.get("custom_fields") or {})
        if obj == "persons" and "name" not in fields and {"first_name", "last_name"} & set(fields):
            parts = (record.get("first_name"), record.get("last_name"))
            record["name"] = " ".join(p for p in parts if p) or record["name"]
        record["update_time"] = at
        self._index_emails(obj, record)

    def live(self, obj: str) -> list[dict[str, Any]]:
        return [r for r in self.objects[obj].values() if not r["is_deleted"]]

    def with_email(self, obj: str, address: str) -> list[dict[str, Any]]:
        """The live records with ``address`` among their e-mails, in any case: all an exact
        e-mail search can match."""
        records = self.objects[obj]
        built = self._by_email.get(obj)
        if built is None or built[0] is not records:
            built = self._by_email[obj] = (records, {})
            for record in records.values():
                self._index_emails(obj, record)
        found = (records.get(i) for i in built[1].get(address.lower(), ()))
        return [r for r in found if r is not None and not r["is_deleted"]]

    def _index_emails(self, obj: str, record: dict[str, Any]) -> None:
        built = self._by_email.get(obj)
        if built is None:  # indexed on the first search
            return
        for entry in record.get("emails") or []:
            value = entry.get("value") if isinstance(entry, dict) else None
            if value is not None:
                built[1].setdefault(str(value).lower(), set()).add(record["id"])


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    body = {
        "success": False,
        "error": message,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
        **extra,
    }
    return JSONResponse(body, status_code=status)


def _ok(data: Any, additional: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    return JSONResponse(body)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    shown = dict(record)
    shown["add_time"] = _iso(record["add_time"])
    shown["update_time"] = _iso(record["update_time"])
    shown["custom_fields"] = dict(record["custom_fields"])
    return shown


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str | None) -> int | None:
    """The offset a cursor stands for; None for a cursor Pipedrive did not give."""
    if not cursor:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def _rate_headers(state: PipedriveState, remaining: int) -> dict[str, str]:
    return {
        "x-ratelimit-limit": "80",
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(state.rate_limit_reset),
        "x-daily-requests-left": "9000",
    }


def _authorized(state: PipedriveState, request: Request) -> JSONResponse | None:
    """Pipedrive's 401 for a missing, wrong or expired credential; None when it is good."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    api_token = request.headers.get("x-api-token") or request.query_params.get("api_token")
    if scheme.lower() == "bearer" and bearer in state.expired_tokens:
        return _error(401, "unauthorized access", errorCode=401, error_info="Token expired")
    if scheme.lower() == "bearer" and bearer == state.access_token:
        return None
    if api_token is not None and state.api_token is not None and api_token == state.api_token:
        return None
    return _error(401, "unauthorized access", errorCode=401)


def build_app(state: PipedriveState) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Any) -> Response:
        state.calls.append((request.method, request.url.path))
        if state.down:
            return _error(503, "Service Unavailable")
        if request.url.path == "/oauth/token":
            response: Response = await call_next(request)
            return response
        if state.rate_limited_calls > 0:
            state.rate_limited_calls -= 1
            response = _error(429, "Request over limit", errorCode=429)
            response.headers.update(_rate_headers(state, 0))
            return response
        refused = _authorized(state, request)
        if refused is not None:
            return refused
        response = await call_next(request)
        response.headers.update(_rate_headers(state, 79))
        return response

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        expected = f"{state.client_id}:{state.client_secret}".encode()
        basic = "Basic " + base64.b64encode(expected).decode()
        form = await request.form()
        if request.headers.get("authorization") != basic:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Invalid client credentials"},
                status_code=401,
            )
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") != state.refresh_token
        ):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Invalid refresh token"},
                status_code=400,
            )
        with state.lock:
            number = int(state.access_token.rsplit("-", 1)[1]) + 1
            state.access_token = f"access-{number}"
            if state.rotate_refresh_tokens:
                state.refresh_token = f"refresh-{number}"
        body = {
            "access_token": state.access_token,
            "token_type": "Bearer",
            "refresh_token": state.refresh_token,
            "scope": "base,deals:full,contacts:full",
            "expires_in": 3599,
            "api_domain": str(request.base_url).rstrip("/"),
        }
        return JSONResponse(body)

    @app.get("/api/v1/users/{user_id}")
    def user(user_id: int) -> Response:
        email = state.users.get(user_id)
        if email is None:
            return _error(404, "User not found")
        name = email.split("@")[0].title()
        data = {"id": user_id, "name": name, "email": email, "active_flag": True}
        return JSONResponse({"success": True, "data": data})

    @app.get(API + "/{name}")
    def list_records_or_fields(name: str, request: Request) -> Response:
        if name in FIELD_LISTS:
            return _fields(state, FIELD_LISTS[name], request)
        if name not in state.objects:
            return _error(404, f"Unknown endpoint {name}")
        return _list(state, name, request)

    @app.get(API + "/{obj}/search")
    def search(obj: str, request: Request) -> Response:
        if obj not in state.objects:
            return _error(404, f"Unknown endpoint {obj}/search")
        return _search(state, obj, request)

    @app.get(API + "/{obj}/{record_id}")
    def get_one(obj: str, record_id: str) -> Response:
        record = _existing(state, obj, record_id)
        if record is None:
            return _error(404, f"{obj[:-1].capitalize()} not found")
        return _ok(_public(record))

    @app.post(API + "/{obj}")
    async def create(obj: str, request: Request) -> Response:
        if obj not in state.objects:
            return _error(404, f"Unknown endpoint {obj}")
        body = await request.json()
        problem = _invalid(state, obj, body, creating=True)
        if problem:
            return _error(400, problem)
        with state.lock:
            record = state.put(obj, _normalised(obj, body), at=state.now())
            state.written.append(
                {"object": obj, "id": record["id"], "method": "POST", "body": body}
            )
        return _ok(_public(record))

    @app.patch(API + "/{obj}/{record_id}")
    async def update(obj: str, record_id: str, request: Request) -> Response:
        record = _existing(state, obj, record_id)
        if record is None:
            return _error(404, f"{obj[:-1].capitalize()} not found")
        body = await request.json()
        problem = _invalid(state, obj, body, creating=False)
        if problem:
            return _error(400, problem)
        with state.lock:
            state.edit(obj, record["id"], _normalised(obj, body), at=state.now())
            state.written.append(
                {"object": obj, "id": record["id"], "method": "PATCH", "body": body}
            )
        return _ok(_public(record))

    @app.delete(API + "/{obj}/{record_id}")
    def delete(obj: str, record_id: str) -> Response:
        record = _existing(state, obj, record_id)
        if record is None:
            return _error(404, f"{obj[:-1].capitalize()} not found")
        with state.lock:
            record["is_deleted"] = True
            record["update_time"] = state.now()
            state.written.append({"object": obj, "id": record["id"], "method": "DELETE"})
        return _ok({"id": record["id"]})

    return app


def _existing(state: PipedriveState, obj: str, record_id: str) -> dict[str, Any] | None:
    if obj not in state.objects or not record_id.isdigit():
        return None
    record = state.objects[obj].get(int(record_id))
    return None if record is None or record["is_deleted"] else record


def _fields(state: PipedriveState, obj: str, request: Request) -> Response:
    specs = [
        {"field_name": code, "field_code": code, "field_type": kind, "is_custom_field": False}
        for code, kind in STANDARD_FIELDS[obj].items()
    ] + [
        {"field_name": code, "field_code": code, "field_type": kind, "is_custom_field": True}
        for code, kind in state.custom_fields.get(obj, {}).items()
    ]
    return _page(specs, request, lambda spec: spec)


def _page(items: list[Any], request: Request, show: Any) -> Response:
    """One cursor page of ``items`` in the v2 list envelope."""
    window = _window(items, request)
    if isinstance(window, JSONResponse):
        return window
    shown, following = window
    return _ok([show(i) for i in shown], {"next_cursor": following})


def _window(items: list[Any], request: Request) -> tuple[list[Any], str | None] | JSONResponse:
    """The items ``limit`` and ``cursor`` ask for and the cursor after them (None: done),
    or Pipedrive's 400."""
    limit = int(request.query_params.get("limit") or DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be between 1 and {MAX_LIMIT}")
    offset = _offset(request.query_params.get("cursor"))
    if offset is None:
        return _error(400, "Invalid cursor")
    following = _cursor(offset + limit) if offset + limit < len(items) else None
    return items[offset : offset + limit], following


def _list(state: PipedriveState, obj: str, request: Request) -> Response:
    query = request.query_params
    status = query.get("status")
    sort_by = query.get("sort_by") or "id"
    if sort_by not in {"id", "update_time", "add_time"}:
        return _error(400, f"sort_by must be one of id, update_time, add_time, got {sort_by}")
    if status is not None and (obj != "deals" or status not in STATUSES):
        return _error(400, f"Invalid status {status}")
    try:
        since = _parse(query["updated_since"]) if query.get("updated_since") else None
        until = _parse(query["updated_until"]) if query.get("updated_until") else None
    except ValueError:
        return _error(400, "updated_since and updated_until must be RFC3339 times")
    with state.lock:
        found = [r for r in state.objects[obj].values() if _listed(r, status)]
    found = [
        r
        for r in found
        if (since is None or r["update_time"] >= since)
        and (until is None or r["update_time"] < until)
    ]
    found.sort(key=lambda r: (r[sort_by], r["id"]), reverse=query.get("sort_direction") == "desc")
    return _page(found, request, _public)


def _listed(record: dict[str, Any], status: str | None) -> bool:
    """Lists hold live records; ``status=deleted`` holds deals deleted in the last 30 days."""
    if status == "deleted":
        return bool(record["is_deleted"]) and (
            record["update_time"] >= datetime.now(UTC) - DELETED_KEPT
        )
    if record["is_deleted"]:
        return False
    return status is None or record.get("status") == status


def _search(state: PipedriveState, obj: str, request: Request) -> Response:
    query = request.query_params
    term = query.get("term") or ""
    exact = query.get("exact_match", "false").lower() == "true"
    wanted = set((query.get("fields") or ",".join(SEARCH_FIELDS[obj])).split(","))
    if wanted - SEARCH_FIELDS[obj]:
        return _error(400, f"fields must be among {', '.join(sorted(SEARCH_FIELDS[obj]))}")
    if len(term) < (1 if exact else 2):
        return _error(400, "term must be at least 2 characters long (1 with exact_match)")
    with state.lock:
        by_email = exact and wanted == {"email"}
        looked = state.with_email(obj, term) if by_email else state.live(obj)
        hits = [
            (r, matched)
            for r in sorted(looked, key=lambda r: r["id"])
            if (matched := _matched(r, wanted, term, exact)) is not None
        ]
    window = _window(hits, request)
    if isinstance(window, JSONResponse):
        return window
    shown, following = window
    items = [_search_item(obj, record, matched, exact) for record, matched in shown]
    return _ok({"items": items}, {"next_cursor": following})


def _matched(record: dict[str, Any], wanted: set[str], term: str, exact: bool) -> list[str] | None:
    """The custom field values that matched (possibly none), or None for no match."""
    needle = term.lower()

    def hit(value: Any) -> bool:
        text = str(value).lower()
        return text == needle if exact else needle in text

    values: list[Any] = []
    if "email" in wanted:
        values += [e.get("value") for e in record.get("emails") or []]
    if "phone" in wanted:
        values += [p.get("value") for p in record.get("phones") or []]
    if "name" in wanted:
        values.append(record.get("name"))
    if "title" in wanted:
        values.append(record.get("title"))
    custom = [v for v in record["custom_fields"].values() if v is not None]
    custom_hits = [str(v) for v in custom if "custom_fields" in wanted and hit(v)]
    if custom_hits or any(v is not None and hit(v) for v in values):
        return custom_hits
    return None


def _search_item(
    obj: str, record: dict[str, Any], custom_hits: list[str], exact: bool
) -> dict[str, Any]:
    common = {
        "id": record["id"],
        "owner": {"id": record.get("owner_id")},
        "organization": None,
        "custom_fields": custom_hits,
        "notes": [],
    }
    if obj == "persons":
        item = common | {
            "type": "person",
            "name": record.get("name"),
            "emails": [e["value"] for e in record.get("emails") or []],
            "phones": [p["value"] for p in record.get("phones") or []],
        }
    else:
        item = common | {
            "type": "deal",
            "title": record.get("title"),
            "value": record.get("value"),
            "currency": record.get("currency"),
            "status": record.get("status"),
            "stage": {"id": record.get("stage_id"), "name": None},
            "person": None,
        }
    return {"result_score": 1.0 if exact else 0.5, "item": item}


def _invalid(state: PipedriveState, obj: str, body: Any, *, creating: bool) -> str | None:
    """Why Pipedrive refuses this body with a 400, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    required = REQUIRED[obj]
    if creating and not body.get(required):
        return f"{required} is required"
    writable = (set(STANDARD_FIELDS[obj]) - READ_ONLY) | {"custom_fields"}
    unknown = sorted(set(body) - writable)
    if unknown:
        return f"Unknown or read-only field: {unknown[0]}"
    emails = body.get("emails", [])
    if not isinstance(emails, list) or any(
        not isinstance(e, dict) or not e.get("value") for e in emails
    ):
        return "emails must be a list of objects with a value"
    return _invalid_custom(state.custom_fields.get(obj, {}), body.get("custom_fields") or {})


def _invalid_custom(defined: dict[str, str], custom: Any) -> str | None:
    if not isinstance(custom, dict):
        return "custom_fields must be an object"
    for key, value in custom.items():
        if key not in defined:
            return f"Custom field with key '{key}' does not exist"
        if defined[key] == "double" and value is not None:
            try:
                float(value)
            except (TypeError, ValueError):
                return f"Custom field '{key}' takes a number, got {value!r}"
    return None


def _normalised(obj: str, body: dict[str, Any]) -> dict[str, Any]:
    """A request body as Pipedrive stores it: every address with its primary flag and
    label."""
    fields = dict(body)
    if obj == "persons" and "emails" in fields:
        fields["emails"] = [
            {
                "value": e["value"],
                "primary": bool(e.get("primary")),
                "label": e.get("label", "work"),
            }
            for e in fields["emails"]
        ]
    return fields
