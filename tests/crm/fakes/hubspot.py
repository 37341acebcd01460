"""A small HubSpot CRM v3 that follows ``vendor-specs/hubspot/CONTRACT.md``, for the
connector's tests: batch upsert/update/archive with per-input errors (207), search on the
last-modified property with the 200-per-page limit and the 10,000-result cap, properties,
OAuth refresh, and the rate-limit and expired-token answers with HubSpot's headers and
bodies. Tests steer it through :class:`HubSpotState` (expire a token, answer the next
calls with 429, go down) and read what it holds.

It holds tens of thousands of records quickly enough for ``bench/crm_sync.py``: ``find``
looks values up in an index of the properties asked for (kept by ``put`` and ``edit``;
change indexed properties through them, not in the record dicts), and a search's next pages
reuse the matches its first page found until something is written.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

SEARCH_CAP = 10_000
MAX_BATCH = 100
MAX_SEARCH_LIMIT = 200
MODIFIED = {"contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BASE_PROPERTIES = {
    "contacts": {
        "email",
        "firstname",
        "lastname",
        "company",
        "hubspot_owner_id",
        "hs_analytics_source",
        "lastmodifieddate",
        "createdate",
    },
    "deals": {
        "dealname",
        "amount",
        "dealstage",
        "closedate",
        "hubspot_owner_id",
        "hs_lastmodifieddate",
        "createdate",
    },
}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class HubSpotState:
    """What the fake holds and how it misbehaves; safe to change from the test thread."""

    custom_properties: dict[str, set[str]] = field(default_factory=dict)
    unique_properties: dict[str, set[str]] = field(
        default_factory=lambda: {"contacts": {"email"}, "deals": set()}
    )
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {"contacts": {}, "deals": {}}
    )
    private_app_token: str | None = None
    access_token: str = "access-1"
    refresh_token: str = "refresh-1"
    client_id: str = "client"
    client_secret: str = "secret"
    expired_tokens: set[str] = field(default_factory=set)
    rate_limited_calls: int = 0
    down: bool = False
    batches_before_down: int | None = None
    """Batch writes to take before going down (a CRM failing in the middle of a run)."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    written: list[dict[str, Any]] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)
    """The account's users who can own records: owner id -> e-mail (CRM Owners API)."""
    clock: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0
    _index: dict[tuple[str, str], tuple[dict[str, Any], dict[str, set[str]]]] = field(
        default_factory=dict, repr=False
    )
    """Per (kind, property) ``find`` was asked about: the objects dict indexed and the ids of
    its records by value."""
    version: int = 0
    """Counts writes, so a search knows whether the matches of its first page still hold."""
    _searches: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict, repr=False)

    def now(self) -> datetime:
        if self.clock is None:
            return datetime.now(UTC)
        self.clock += timedelta(milliseconds=1)
        return self.clock

    def expire_access_token(self) -> None:
        self.expired_tokens.add(self.access_token)

    def properties(self, kind: str) -> set[str]:
        return BASE_PROPERTIES[kind] | self.custom_properties.get(kind, set())

    def find(self, kind: str, prop: str, value: str) -> dict[str, Any] | None:
        """The first live record (in creation order) whose ``prop`` is ``value``."""
        objects = self.objects[kind]
        if prop == "hs_object_id":
            return objects.get(value)
        built = self._index.get((kind, prop))
        if built is None or built[0] is not objects:
            by_value: dict[str, set[str]] = {}
            for obj_id, obj in objects.items():
                held = obj["properties"].get(prop)
                if isinstance(held, str):
                    by_value.setdefault(held, set()).add(obj_id)
            built = self._index[(kind, prop)] = (objects, by_value)
        for obj_id in sorted(built[1].get(value, ()), key=int):
            obj = objects.get(obj_id)
            if obj is not None and obj["properties"].get(prop) == value and not obj["archived"]:
                return obj
        return None

    def _indexed(self, kind: str, obj_id: str, properties: dict[str, Any]) -> None:
        self.version += 1
        for (of, prop), (_, by_value) in self._index.items():
            held = properties.get(prop)
            if of == kind and isinstance(held, str):
                by_value.setdefault(held, set()).add(obj_id)

    def put(self, kind: str, properties: dict[str, str], *, at: datetime) -> dict[str, Any]:
        """A record as a user would make it in HubSpot (for pull tests)."""
        self._serial += 1
        obj_id = str(1000 + self._serial)
        obj = {
            "id": obj_id,
            "properties": {**properties, "createdate": _iso(at), MODIFIED[kind]: _iso(at)},
            "createdAt": at,
            "updatedAt": at,
            "archived": False,
        }
        obj["properties"]["hs_object_id"] = obj_id
        self.objects[kind][obj_id] = obj
        self._indexed(kind, obj_id, obj["properties"])
        return obj

    def edit(self, kind: str, obj_id: str, properties: dict[str, str], *, at: datetime) -> None:
        obj = self.objects[kind][obj_id]
        obj["properties"].update(properties)
        obj["properties"][MODIFIED[kind]] = _iso(at)
        obj["updatedAt"] = at
        self._indexed(kind, obj_id, properties)


def _error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }
    return JSONResponse(body, status_code=status)


def _public(obj: dict[str, Any], wanted: list[str] | None = None) -> dict[str, Any]:
    props = obj["properties"]
    shown = {k: props.get(k) for k in wanted} if wanted else dict(props)
    shown.setdefault("hs_object_id", obj["id"])
    return {
        "id": obj["id"],
        "properties": shown,
        "createdAt": _iso(obj["createdAt"]),
        "updatedAt": _iso(obj["updatedAt"]),
        "archived": obj["archived"],
    }


def build_app(state: HubSpotState) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Any) -> Response:
        state.calls.append((request.method, request.url.path))
        if state.down:
            return _error(503, "SERVICE_UNAVAILABLE", "HubSpot is temporarily unavailable.")
        if request.url.path == "/oauth/v1/token":
            response: Response = await call_next(request)
            return response
        if state.rate_limited_calls > 0:
            state.rate_limited_calls -= 1
            response = _error(
                429,
                "RATE_LIMITS",
                "You have reached your ten_secondly_rolling limit.",
                errorType="RATE_LIMIT",
                policyName="TEN_SECONDLY_ROLLING",
                groupName="revhub",
            )
            response.headers.update(
                {
                    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                    "X-HubSpot-RateLimit-Max": "100",
                    "X-HubSpot-RateLimit-Remaining": "0",
                    "X-HubSpot-RateLimit-Daily": "250000",
                    "X-HubSpot-RateLimit-Daily-Remaining": "249000",
                }
            )
            return response
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        valid = {state.access_token} | ({state.private_app_token} - {None})
        if scheme.lower() != "bearer" or token in state.expired_tokens:
            return _error(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 0 second(s) ago.",
            )
        if token not in valid:
            return _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        response = await call_next(request)
        response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
        response.headers["X-HubSpot-RateLimit-Max"] = "100"
        response.headers["X-HubSpot-RateLimit-Remaining"] = "99"
        return response

    @app.post("/oauth/v1/token")
    async def token(request: Request) -> Response:
        form = await request.form()
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != state.client_id
            or form.get("client_secret") != state.client_secret
            or form.get("refresh_token") != state.refresh_token
        ):
            return JSONResponse(
                {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"},
                status_code=400,
            )
        with state.lock:
            number = int(state.access_token.rsplit("-", 1)[1]) + 1
            state.access_token = f"access-{number}"
        body = {
            "access_token": state.access_token,
            "refresh_token": state.refresh_token,
            "expires_in": 1800,
            "token_type": "bearer",
        }
        return JSONResponse(body)

    @app.get("/crm/v3/owners/{owner_id}")
    def owner(owner_id: str) -> Response:
        email = state.owners.get(owner_id)
        if email is None:
            return _error(404, "OBJECT_NOT_FOUND", f"No owner with id {owner_id}")
        body = {
            "id": owner_id,
            "email": email,
            "firstName": email.split("@")[0].title(),
            "lastName": "",
            "userId": int(owner_id),
            "archived": False,
        }
        return JSONResponse(body)

    @app.get("/crm/v3/properties/{kind}")
    def properties(kind: str) -> Response:
        if kind not in state.objects:
            return _error(404, "OBJECT_NOT_FOUND", f"Unable to infer object type from: {kind}")
        results = [
            {
                "name": name,
                "label": name,
                "type": "string",
                "fieldType": "text",
                "groupName": "revhub",
                "hasUniqueValue": name in state.unique_properties.get(kind, set()),
            }
            for name in sorted(state.properties(kind))
        ]
        return JSONResponse({"results": results})

    @app.post("/crm/v3/objects/{kind}/batch/{action}")
    async def batch(kind: str, action: str, request: Request) -> Response:
        if kind not in state.objects or action not in {"upsert", "update", "archive"}:
            return _error(404, "OBJECT_NOT_FOUND", f"No route for {kind}/batch/{action}")
        if state.batches_before_down is not None:
            if state.batches_before_down <= 0:
                return _error(503, "SERVICE_UNAVAILABLE", "HubSpot is temporarily unavailable.")
            state.batches_before_down -= 1
        body = await request.json()
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON: inputs is required")
        if len(inputs) > MAX_BATCH:
            return _error(
                400, "VALIDATION_ERROR", f"Batch input limit is {MAX_BATCH}, got {len(inputs)}"
            )
        if action == "archive":
            with state.lock:
                for item in inputs:
                    obj = state.objects[kind].get(str(item.get("id")))
                    if obj is not None:
                        obj["archived"] = True
                        obj["updatedAt"] = state.now()
                state.version += 1
            return Response(status_code=204)
        started = state.now()
        with state.lock:
            results, errors = [], []
            for item in inputs:
                outcome = _write_one(state, kind, action, item)
                if isinstance(outcome, dict) and "category" in outcome:
                    errors.append(outcome)
                else:
                    results.append(outcome)
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": _iso(started),
            "completedAt": _iso(state.now()),
        }
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        return JSONResponse(answer, status_code=207 if errors else 200)

    @app.post("/crm/v3/objects/{kind}/search")
    async def search(kind: str, request: Request) -> Response:
        if kind not in state.objects:
            return _error(404, "OBJECT_NOT_FOUND", f"Unable to infer object type from: {kind}")
        body = await request.json()
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
        if limit > MAX_SEARCH_LIMIT:
            return _error(400, "VALIDATION_ERROR", f"limit must be <= {MAX_SEARCH_LIMIT}")
        if after + limit > SEARCH_CAP:
            return _error(
                400,
                "VALIDATION_ERROR",
                f"There was a problem with the request: paging past {SEARCH_CAP} results "
                "is not supported",
            )
        asked = json.dumps([kind, body.get("filterGroups"), body.get("sorts")], sort_keys=True)
        with state.lock:
            cached = state._searches.get(asked) if after else None
            if cached is not None and cached[0] == state.version:
                found = cached[1]
            else:
                found = [
                    o
                    for o in state.objects[kind].values()
                    if not o["archived"] and _matches(o, body.get("filterGroups") or [])
                ]
                found.sort(key=lambda o: _sort_key(o, body.get("sorts") or []))
                if len(state._searches) >= 8:
                    state._searches.clear()
                state._searches[asked] = (state.version, found)
        page = found[after : after + limit]
        answer: dict[str, Any] = {
            "total": len(found),
            "results": [_public(o, body.get("properties")) for o in page],
        }
        if after + limit < len(found):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return JSONResponse(answer)

    return app


def _write_one(state: HubSpotState, kind: str, action: str, item: dict[str, Any]) -> Any:
    id_property = item.get("idProperty") or "hs_object_id"
    key = str(item.get("id", ""))
    props = {k: "" if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
    unknown = sorted(set(props) - state.properties(kind))
    if unknown:
        return _input_error(key, f'Property "{unknown[0]}" does not exist', "PROPERTY_DOESNT_EXIST")
    if id_property != "hs_object_id" and id_property not in state.unique_properties[kind]:
        return _input_error(key, f"{id_property} is not a unique property", "INVALID_ID_PROPERTY")
    email = props.get("email", key if id_property == "email" else None)
    if kind == "contacts" and email is not None and not EMAIL.match(email):
        return _input_error(key, f'Property values were not valid: "{email}" is not an email')
    existing = state.find(kind, id_property, key)
    now = state.now()
    if existing is None and action == "update":
        return _input_error(
            key,
            f"Could not find a {kind[:-1]} with {id_property}={key}",
            "OBJECT_NOT_FOUND",
            status="error",
        )
    if existing is None:
        created = state.put(
            kind, props | ({id_property: key} if id_property != "hs_object_id" else {}), at=now
        )
        new = True
    else:
        state.edit(kind, existing["id"], props, at=now)
        created, new = existing, False
    state.written.append(
        {
            "kind": kind,
            "id": created["id"],
            "properties": props,
            "trace": item.get("objectWriteTraceId"),
        }
    )
    result = _public(created)
    result["new"] = new
    if item.get("objectWriteTraceId"):
        result["objectWriteTraceId"] = item["objectWriteTraceId"]
    return result


def _input_error(key: str, message: str, sub: str = "INVALID_PROPERTY", **_: Any) -> dict[str, Any]:
    return {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": message,
        "context": {"id": [key]},
        "errors": [{"message": message, "code": sub}],
    }


def _value(obj: dict[str, Any], prop: str) -> Any:
    raw = obj["properties"].get(prop)
    if prop in MODIFIED.values() or prop == "createdate":
        return _ms(datetime.fromisoformat(raw.replace("Z", "+00:00"))) if raw else None
    return raw


def _matches(obj: dict[str, Any], groups: list[dict[str, Any]]) -> bool:
    if not groups:
        return True
    return any(all(_holds(obj, f) for f in g.get("filters", [])) for g in groups)


def _holds(obj: dict[str, Any], flt: dict[str, Any]) -> bool:
    have = _value(obj, flt["propertyName"])
    op = flt["operator"]
    if op == "HAS_PROPERTY":
        return have not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return have in (None, "")
    if have is None:
        return False
    want: Any = flt.get("value")
    if isinstance(have, int):
        want = int(want) if want is not None else None
        high = int(flt["highValue"]) if flt.get("highValue") is not None else None
    else:
        high = flt.get("highValue")
    checks = {
        "EQ": lambda: have == want,
        "NEQ": lambda: have != want,
        "LT": lambda: have < want,
        "LTE": lambda: have <= want,
        "GT": lambda: have > want,
        "GTE": lambda: have >= want,
        "BETWEEN": lambda: want <= have <= high,
        "IN": lambda: str(have) in {str(v) for v in flt.get("values", [])},
    }
    return bool(checks[op]())


def _sort_key(obj: dict[str, Any], sorts: list[Any]) -> tuple[Any, ...]:
    keys: list[Any] = []
    for entry in sorts:
        name = entry if isinstance(entry, str) else entry.get("propertyName")
        keys.append(_value(obj, str(name).lstrip("-")) or 0)
    keys.append(int(obj["id"]))
    return tuple(keys)
