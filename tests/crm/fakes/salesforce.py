"""A small Salesforce org that follows ``vendor-specs/salesforce/CONTRACT.md``, for the
connector's tests: the OAuth token endpoint (client credentials with HTTP Basic, JWT bearer
checked against the connected app's public key), sObject Collections create, update, upsert
by External ID and delete with per-record errors, SOQL ``query``/``queryAll`` over a small
subset of the language with ``nextRecordsUrl`` paging, describe, and Salesforce's error
arrays, 401 ``INVALID_SESSION_ID``, 403 ``REQUEST_LIMIT_EXCEEDED`` and the
``Sforce-Limit-Info`` header. Tests steer it through :class:`SalesforceState` (expire the
sessions, exhaust the API allowance, go down) and read what it holds.
"""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

API_LIMIT = 5000
MAX_RECORDS = 200
DEFAULT_BATCH = 2000
MIN_BATCH = 200
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_MAX_LIFETIME_S = 300
ORG_ID = "00D8c000001AbCdEAK"
INTEGRATION_USER = "0058c00000IntGrAAA"
SALES_REP = "0058c00000SaLeSAAA"
KEY_PREFIX = {"Lead": "00Q", "Opportunity": "006"}
DATETIME_FIELDS = {"CreatedDate", "LastModifiedDate", "SystemModstamp"}
SYSTEM_FIELDS = {"Id", "IsDeleted", "OwnerId", "LastModifiedById"} | DATETIME_FIELDS
READ_ONLY = SYSTEM_FIELDS - {"OwnerId"} | {"IsWon", "IsClosed"}
RELATIONSHIPS = {"OwnerId": "Owner", "LastModifiedById": "LastModifiedBy"}
BASE_FIELDS = {
    "Lead": {"FirstName", "LastName", "Company", "Email", "LeadSource", "Status"},
    "Opportunity": {"Name", "Amount", "StageName", "CloseDate", "IsWon", "IsClosed", "CampaignId"},
}
REQUIRED = {"Lead": {"LastName", "Company"}, "Opportunity": {"Name", "StageName", "CloseDate"}}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<sobject>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<direction>ASC|DESC))?)?\s*$",
    re.IGNORECASE | re.DOTALL,
)
COMPARISON = re.compile(r"^(?P<field>\w+)\s*(?P<op>>=|<=|!=|>|<|=)\s*(?P<value>.+)$", re.DOTALL)
IN_LIST = re.compile(r"^(?P<field>\w+)\s+IN\s*\((?P<values>.*)\)$", re.IGNORECASE | re.DOTALL)
QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
DATETIME_LITERAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
OPERATORS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


class SoqlError(Exception):
    """A query Salesforce would refuse with 400 and ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _iso(at: datetime) -> str:
    """Salesforce's dateTime form: milliseconds and a ``+0000`` offset."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


@dataclass
class SalesforceState:
    """What the fake org holds and how it misbehaves; safe to change from the test thread."""

    custom_fields: dict[str, set[str]] = field(default_factory=dict)
    external_ids: dict[str, set[str]] = field(
        default_factory=lambda: {"Lead": set(), "Opportunity": set()}
    )
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {"Lead": {}, "Opportunity": {}}
    )
    users: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            INTEGRATION_USER: {"Name": "Integration User", "Email": "integration@acme.example"},
            SALES_REP: {"Name": "Sam Rep", "Email": "sam@acme.example"},
        }
    )
    client_id: str = "consumer-key"
    client_secret: str = "consumer-secret"
    username: str = "integration@acme.example"
    user_id: str = INTEGRATION_USER
    public_key: str | None = None
    audience: str = "https://login.salesforce.com"
    tokens: dict[str, str] = field(default_factory=dict)
    expired_tokens: set[str] = field(default_factory=set)
    limit_exceeded_calls: int = 0
    down: bool = False
    api_used: int = 0
    api_limit: int = API_LIMIT
    calls: list[tuple[str, str]] = field(default_factory=list)
    written: list[dict[str, Any]] = field(default_factory=list)
    cursors: dict[str, tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)
    clock: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0
    _matches: dict[tuple[str, str], tuple[dict[str, Any], dict[Any, set[str]]]] = field(
        default_factory=dict, repr=False
    )
    """:meth:`matching`'s index per (sObject, field), for orgs of tens of thousands of
    records (``bench/crm_sync.py``): the records dict indexed and the Ids by value. ``put``
    and ``edit`` keep it: change indexed fields through them."""

    def now(self) -> datetime:
        if self.clock is None:
            return datetime.now(UTC)
        self.clock += timedelta(milliseconds=1)
        return self.clock

    def expire_sessions(self) -> None:
        self.expired_tokens |= set(self.tokens)

    def fields_of(self, sobject: str) -> set[str]:
        return SYSTEM_FIELDS | BASE_FIELDS[sobject] | self.custom_fields.get(sobject, set())

    def live(self, sobject: str) -> list[dict[str, Any]]:
        return [r for r in self.objects[sobject].values() if not r["IsDeleted"]]

    def matching(self, sobject: str, name: str, value: Any) -> list[dict[str, Any]]:
        """The live records holding ``value`` in ``name``, in creation order."""
        records = self.objects[sobject]
        try:
            hash(value)
        except TypeError:
            return [r for r in self.live(sobject) if r.get(name) == value]
        built = self._matches.get((sobject, name))
        if built is None or built[0] is not records:
            built = self._matches[(sobject, name)] = (records, {})
            for record in records.values():
                self._index(sobject, record, only=name)
        found = (records.get(i) for i in sorted(built[1].get(value, ())))
        return [r for r in found if r is not None and not r["IsDeleted"] and r.get(name) == value]

    def _index(self, sobject: str, record: dict[str, Any], only: str | None = None) -> None:
        for (of, name), (_, by_value) in self._matches.items():
            if of == sobject and only in (None, name):
                try:
                    by_value.setdefault(record.get(name), set()).add(record["Id"])
                except TypeError:  # an unhashable value equals no hashable one
                    continue

    def put(
        self, sobject: str, fields: dict[str, Any], *, at: datetime, by: str = SALES_REP
    ) -> dict[str, Any]:
        """A record as a user would make it in Salesforce (for pull tests)."""
        self._serial += 1
        record_id = f"{KEY_PREFIX[sobject]}8c{self._serial:010d}AAA"
        record = {
            "Id": record_id,
            "IsDeleted": False,
            "OwnerId": by,
            "CreatedDate": at,
            **fields,
        }
        self.objects[sobject][record_id] = record
        self.touch(record, at=at, by=by)
        self._index(sobject, record)
        return record

    def edit(
        self, sobject: str, record_id: str, fields: dict[str, Any], *, at: datetime, by: str
    ) -> dict[str, Any]:
        record = self.objects[sobject][record_id]
        record.update(fields)
        self.touch(record, at=at, by=by)
        self._index(sobject, record)
        return record

    def remove(self, sobject: str, record_id: str, *, at: datetime, by: str = SALES_REP) -> None:
        """Move a record to the recycle bin: ``queryAll`` still returns it."""
        record = self.objects[sobject][record_id]
        record["IsDeleted"] = True
        self.touch(record, at=at, by=by)

    @staticmethod
    def touch(record: dict[str, Any], *, at: datetime, by: str) -> None:
        record |= {"LastModifiedDate": at, "SystemModstamp": at, "LastModifiedById": by}


def _errors(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    """Salesforce answers a refused request with an array of errors."""
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse([body], status_code=status)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _failure(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"statusCode": code, "message": message, "fields": fields or []}],
    }


def build_app(state: SalesforceState) -> FastAPI:
    app = FastAPI()
    _gatekeeper(app, state)
    _token_endpoint(app, state)
    _describe(app, state)
    _collections(app, state)
    _queries(app, state)
    return app


def _gatekeeper(app: FastAPI, state: SalesforceState) -> None:
    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Any) -> Response:
        state.calls.append((request.method, request.url.path))
        if state.down:
            return _with_usage(state, _errors(503, "SERVER_UNAVAILABLE", "Service Unavailable"))
        if request.url.path == "/services/oauth2/token":
            response: Response = await call_next(request)
            return response
        return _with_usage(state, await _authorized(request, call_next, state))


def _with_usage(state: SalesforceState, response: Response) -> Response:
    """Every answer reports the org's use of its daily allowance; a refusal for the limit
    reports it spent."""
    exhausted = response.status_code == 403
    used = max(state.api_used, state.api_limit) if exhausted else state.api_used
    response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{state.api_limit}"
    return response


async def _authorized(request: Request, call_next: Any, state: SalesforceState) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token not in state.tokens or token in state.expired_tokens:
        return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
    if state.limit_exceeded_calls > 0:
        state.limit_exceeded_calls -= 1
        return _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    state.api_used += 1
    request.state.user_id = state.tokens[token]
    response: Response = await call_next(request)
    return response


def _token_endpoint(app: FastAPI, state: SalesforceState) -> None:
    @app.post("/services/oauth2/token")
    async def token(request: Request) -> Response:
        form = await request.form()
        grant = form.get("grant_type")
        if grant == "client_credentials":
            refusal = _client_credentials(request, dict(form), state)
        elif grant == JWT_BEARER:
            refusal = _jwt_bearer(str(form.get("assertion") or ""), state)
        else:
            refusal = _oauth_error("unsupported_grant_type", "grant type not supported")
        if refusal is not None:
            return refusal
        with state.lock:
            access_token = f"{ORG_ID}!AQ{len(state.tokens) + 1:04d}.fake"
            state.tokens[access_token] = state.user_id
        base = str(request.base_url).rstrip("/")
        issued = str(int(time.time() * 1000))
        return JSONResponse(
            {
                "access_token": access_token,
                "instance_url": base,
                "id": f"{base}/id/{ORG_ID}/{state.user_id}",
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": base64.b64encode(f"{access_token}{issued}".encode()).decode(),
                "scope": "api",
            }
        )


def _client_credentials(
    request: Request, form: dict[str, Any], state: SalesforceState
) -> Response | None:
    """The consumer key and secret, as HTTP Basic or in the form."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    else:
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if client_id != state.client_id or secret != state.client_secret:
        return _oauth_error("invalid_client", "invalid client credentials")
    return None


def _jwt_bearer(assertion: str, state: SalesforceState) -> Response | None:
    """An RS256 assertion signed by the key whose certificate the connected app holds,
    issued by the consumer key, for a pre-authorized user, expiring within minutes."""
    if state.public_key is None:
        return _oauth_error("invalid_grant", "invalid assertion")
    try:
        claims = jwt.decode(
            assertion,
            state.public_key,
            algorithms=["RS256"],
            audience=state.audience,
            options={"require": ["iss", "sub", "aud", "exp"]},
        )
    except jwt.InvalidAudienceError:
        return _oauth_error("invalid_grant", "audience is invalid")
    except jwt.ExpiredSignatureError:
        return _oauth_error("invalid_grant", "expired authorization code")
    except jwt.InvalidTokenError:
        return _oauth_error("invalid_grant", "invalid assertion")
    if claims["iss"] != state.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if claims["sub"] != state.username:
        return _oauth_error("invalid_grant", "user hasn't approved this consumer")
    if claims["exp"] > time.time() + JWT_MAX_LIFETIME_S:
        return _oauth_error("invalid_grant", "invalid assertion")
    return None


def _describe(app: FastAPI, state: SalesforceState) -> None:
    @app.get("/services/data/{version}/sobjects/{sobject}/describe")
    def describe(version: str, sobject: str) -> Response:
        if sobject not in state.objects:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        fields = [
            _describe_field(state, sobject, name) for name in sorted(state.fields_of(sobject))
        ]
        return JSONResponse({"name": sobject, "label": sobject, "custom": False, "fields": fields})


def _describe_field(state: SalesforceState, sobject: str, name: str) -> dict[str, Any]:
    kind = "datetime" if name in DATETIME_FIELDS else "string"
    if name.endswith("Id"):
        kind = "id" if name == "Id" else "reference"
    return {
        "name": name,
        "label": name,
        "type": "email" if name == "Email" else kind,
        "custom": name.endswith("__c"),
        "externalId": name in state.external_ids.get(sobject, set()),
        "unique": name in state.external_ids.get(sobject, set()),
        "nillable": name not in REQUIRED[sobject] | SYSTEM_FIELDS,
        "createable": name not in READ_ONLY,
        "updateable": name not in READ_ONLY,
        "relationshipName": RELATIONSHIPS.get(name),
        "referenceTo": ["User"] if name in RELATIONSHIPS else [],
    }


def _collections(app: FastAPI, state: SalesforceState) -> None:
    @app.post("/services/data/{version}/composite/sobjects")
    async def create(version: str, request: Request) -> Response:
        return await _save_all(state, request, "create")

    @app.patch("/services/data/{version}/composite/sobjects")
    async def update(version: str, request: Request) -> Response:
        return await _save_all(state, request, "update")

    @app.patch("/services/data/{version}/composite/sobjects/{sobject}/{ext_field}")
    async def upsert(version: str, sobject: str, ext_field: str, request: Request) -> Response:
        if sobject not in state.objects:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        if ext_field not in state.external_ids.get(sobject, set()):
            return _errors(
                400,
                "INVALID_FIELD",
                f"Field name provided, {ext_field} is not an External ID or indexed field "
                f"for {sobject}",
            )
        return await _save_all(state, request, "upsert", sobject, ext_field)

    @app.delete("/services/data/{version}/composite/sobjects")
    def delete(
        version: str,
        request: Request,
        ids: str = "",
        all_or_none: bool = Query(False, alias="allOrNone"),
    ) -> Response:
        wanted = [i for i in ids.split(",") if i]
        if not wanted:
            return _errors(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(wanted) > MAX_RECORDS:
            return _errors(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_RECORDS} records",
            )
        with state.lock:
            results = _all_or_none(
                state, all_or_none, lambda: [_delete_one(state, i, request) for i in wanted]
            )
        return JSONResponse(results)


async def _save_all(
    state: SalesforceState,
    request: Request,
    op: str,
    sobject: str | None = None,
    ext_field: str | None = None,
) -> Response:
    body = await request.json()
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records:
        return _errors(400, "JSON_PARSER_ERROR", "records is required")
    if len(records) > MAX_RECORDS:
        return _errors(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
        )
    user = request.state.user_id
    with state.lock:
        results = _all_or_none(
            state,
            bool(body.get("allOrNone")),
            lambda: [_save_one(state, r, op, user, sobject, ext_field) for r in records],
        )
    return JSONResponse(results)


def _all_or_none(state: SalesforceState, all_or_none: bool, run: Any) -> list[dict[str, Any]]:
    """With ``allOrNone``, one refused record rolls back the others."""
    saved = copy.deepcopy(state.objects) if all_or_none else state.objects  # only to roll back
    written = len(state.written)
    results: list[dict[str, Any]] = run()
    if not all_or_none or all(r["success"] for r in results):
        return results
    state.objects = saved
    del state.written[written:]
    rolled = _failure(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were valid"
    )
    return [r if not r["success"] else dict(rolled) for r in results]


def _save_one(
    state: SalesforceState,
    record: dict[str, Any],
    op: str,
    user: str,
    sobject: str | None,
    ext_field: str | None,
) -> dict[str, Any]:
    kind = (record.get("attributes") or {}).get("type")
    if kind not in state.objects or (sobject is not None and kind != sobject):
        return _failure("INVALID_TYPE", "Must send a concrete entity type.")
    fields = {k: v for k, v in record.items() if k not in {"attributes", "id"}}
    refusal = _invalid_fields(state, kind, fields)
    if refusal is not None:
        return refusal
    if op == "update":
        return _update(state, kind, str(record.get("id") or ""), fields, user)
    if op == "create":
        return _create(state, kind, fields, user) if "id" not in record else _id_on_insert()
    return _upsert(state, kind, ext_field or "", fields, user)


def _id_on_insert() -> dict[str, Any]:
    return _failure("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])


def _invalid_fields(
    state: SalesforceState, sobject: str, fields: dict[str, Any]
) -> dict[str, Any] | None:
    for name in fields:
        if name not in state.fields_of(sobject):
            return _failure(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}", [name]
            )
        if name in READ_ONLY:
            return _failure(
                "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {name}", [name]
            )
    email = fields.get("Email")
    if email not in (None, "") and not EMAIL.match(str(email)):
        return _failure(
            "INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {email}", ["Email"]
        )
    return None


def _duplicate(
    state: SalesforceState, sobject: str, fields: dict[str, Any], record_id: str | None
) -> dict[str, Any] | None:
    for name in state.external_ids.get(sobject, set()) & set(fields):
        for other in state.matching(sobject, name, fields[name]):
            if other["Id"] != record_id:
                return _failure(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: "
                    f"{other['Id']}",
                    [name],
                )
    return None


def _create(
    state: SalesforceState, sobject: str, fields: dict[str, Any], user: str
) -> dict[str, Any]:
    missing = sorted(n for n in REQUIRED[sobject] if fields.get(n) in (None, ""))
    if missing:
        return _failure(
            "REQUIRED_FIELD_MISSING",
            f"Required fields are missing: [{', '.join(missing)}]",
            missing,
        )
    refusal = _duplicate(state, sobject, fields, None)
    if refusal is not None:
        return refusal
    record = state.put(sobject, fields, at=state.now(), by=user)
    state.written.append({"sobject": sobject, "id": record["Id"], "op": "create", "fields": fields})
    return {"id": record["Id"], "success": True, "errors": []}


def _update(
    state: SalesforceState, sobject: str, record_id: str, fields: dict[str, Any], user: str
) -> dict[str, Any]:
    if not record_id:
        return _failure("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    record = state.objects[sobject].get(record_id)
    if record is None:
        return _failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    if record["IsDeleted"]:
        return _failure("ENTITY_IS_DELETED", "entity is deleted")
    refusal = _duplicate(state, sobject, fields, record_id)
    if refusal is not None:
        return refusal
    state.edit(sobject, record_id, fields, at=state.now(), by=user)
    state.written.append({"sobject": sobject, "id": record_id, "op": "update", "fields": fields})
    return {"id": record_id, "success": True, "errors": []}


def _upsert(
    state: SalesforceState, sobject: str, ext_field: str, fields: dict[str, Any], user: str
) -> dict[str, Any]:
    value = fields.get(ext_field)
    if value in (None, ""):
        return _failure("MISSING_ARGUMENT", f"{ext_field} not specified", [ext_field])
    matches = state.matching(sobject, ext_field, value)
    if len(matches) > 1:
        return _failure(
            "DUPLICATE_EXTERNAL_ID",
            f"{ext_field}: more than one record found for external id field: "
            f"{[m['Id'] for m in matches]}",
            [ext_field],
        )
    if not matches:
        return _create(state, sobject, fields, user) | {"created": True}
    return _update(state, sobject, matches[0]["Id"], fields, user) | {"created": False}


def _delete_one(state: SalesforceState, record_id: str, request: Request) -> dict[str, Any]:
    for sobject, records in state.objects.items():
        record = records.get(record_id)
        if record is None:
            continue
        if record["IsDeleted"]:
            return _failure("ENTITY_IS_DELETED", "entity is deleted")
        state.remove(sobject, record_id, at=state.now(), by=request.state.user_id)
        state.written.append({"sobject": sobject, "id": record_id, "op": "delete", "fields": {}})
        return {"id": record_id, "success": True, "errors": []}
    return _failure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")


def _queries(app: FastAPI, state: SalesforceState) -> None:
    @app.get("/services/data/{version}/query")
    def query(version: str, q: str, request: Request) -> Response:
        return _run_query(state, version, q, request, include_deleted=False)

    @app.get("/services/data/{version}/queryAll")
    def query_all(version: str, q: str, request: Request) -> Response:
        return _run_query(state, version, q, request, include_deleted=True)

    @app.get("/services/data/{version}/query/{locator}")
    def more(version: str, locator: str) -> Response:
        cursor, _, offset = locator.rpartition("-")
        if cursor not in state.cursors or not offset.isdigit():
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        batch, found = state.cursors[cursor]
        return JSONResponse(_page(state, version, cursor, found, int(offset), batch))


def _run_query(
    state: SalesforceState, version: str, soql: str, request: Request, *, include_deleted: bool
) -> Response:
    try:
        with state.lock:
            found = _select(state, soql, include_deleted)
    except SoqlError as exc:
        return _errors(400, exc.code, str(exc))
    options = request.headers.get("Sforce-Query-Options", "")
    asked = re.search(r"batchSize=(\d+)", options)
    batch = min(max(int(asked[1]), MIN_BATCH), DEFAULT_BATCH) if asked else DEFAULT_BATCH
    with state.lock:
        cursor = f"01g8c{len(state.cursors) + 1:010d}AAA"
        state.cursors[cursor] = (batch, found)
    return JSONResponse(_page(state, version, cursor, found, 0, batch))


def _page(
    state: SalesforceState,
    version: str,
    cursor: str,
    found: list[dict[str, Any]],
    offset: int,
    batch: int,
) -> dict[str, Any]:
    end = offset + batch
    page: dict[str, Any] = {
        "totalSize": len(found),
        "done": end >= len(found),
        "records": found[offset:end],
    }
    if not page["done"]:
        page["nextRecordsUrl"] = f"/services/data/{version}/query/{cursor}-{end}"
    return page


def _select(state: SalesforceState, soql: str, include_deleted: bool) -> list[dict[str, Any]]:
    """``SELECT f, Rel.f FROM Obj [WHERE one condition] [ORDER BY f [ASC|DESC]]``."""
    parsed = SOQL.match(soql)
    if parsed is None:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token in query: {soql[:80]}")
    sobject = parsed["sobject"]
    if sobject not in state.objects:
        raise SoqlError("INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
    selected = [f.strip() for f in parsed["fields"].split(",")]
    for name in [*selected, parsed["order"] or "Id"]:
        _known(state, sobject, name)
    rows = state.objects[sobject].values()
    condition = _condition(state, sobject, parsed["where"]) if parsed["where"] else None
    found = [
        r
        for r in rows
        if (include_deleted or not r["IsDeleted"]) and (condition is None or condition(r))
    ]
    order = parsed["order"] or "Id"
    found.sort(key=lambda r: (r.get(order) is None, r.get(order) or "", r["Id"]))
    if (parsed["direction"] or "").upper() == "DESC":
        found.reverse()
    return [_shown(state, sobject, r, selected) for r in found]


def _known(state: SalesforceState, sobject: str, name: str) -> None:
    relationship, _, target = name.partition(".")
    if target and relationship in RELATIONSHIPS.values() and target in {"Name", "Email", "Id"}:
        return
    if name not in state.fields_of(sobject):
        raise SoqlError(
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name.",
        )


def _condition(state: SalesforceState, sobject: str, where: str) -> Any:
    listed = IN_LIST.match(where.strip())
    if listed:
        _known(state, sobject, listed["field"])
        values = {_unquote(v) for v in QUOTED.findall(listed["values"])}
        return lambda r: r.get(listed["field"]) in values
    compared = COMPARISON.match(where.strip())
    if compared is None:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {where[:80]}")
    name, op = compared["field"], compared["op"]
    _known(state, sobject, name)
    value = _literal(name, compared["value"].strip())
    return lambda r: r.get(name) is not None and OPERATORS[op](r[name], value)


def _literal(name: str, text: str) -> Any:
    if name in DATETIME_FIELDS:
        if not DATETIME_LITERAL.match(text):
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{name}' must be of type dateTime and "
                "should not be enclosed in quotes",
            )
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    quoted = QUOTED.fullmatch(text)
    if quoted is None:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {text[:80]}")
    return _unquote(quoted[1])


def _unquote(text: str) -> str:
    """A SOQL string literal's text: backslash escapes the next character."""
    return re.sub(r"\\(.)", r"\1", text)


def _shown(
    state: SalesforceState, sobject: str, record: dict[str, Any], selected: list[str]
) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "attributes": {
            "type": sobject,
            "url": f"/services/data/v60.0/sobjects/{sobject}/{record['Id']}",
        }
    }
    for name in selected:
        relationship, _, target = name.partition(".")
        if not target:
            value = record.get(name)
            shown[name] = _iso(value) if isinstance(value, datetime) else value
            continue
        id_field = next(k for k, v in RELATIONSHIPS.items() if v == relationship)
        user_id = record.get(id_field)
        if user_id is None or user_id not in state.users:
            shown[relationship] = None
            continue
        related = shown.get(relationship) or {
            "attributes": {"type": "User", "url": f"/services/data/v60.0/sobjects/User/{user_id}"}
        }
        related[target] = user_id if target == "Id" else state.users[user_id].get(target)
        shown[relationship] = related
    return shown
