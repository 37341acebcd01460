"""What every CRM connector offers the sync engine, whatever the vendor.

A connector speaks its vendor's API over httpx (authentication, batch writes, incremental
reads, deletions) and translates the vendor's failures into the few the engine acts on: a
rate limit pauses the run until ``retry_after`` and resumes it; an expired token is
refreshed once and the call repeated; a vendor that is down fails the call and leaves the
rows for the next run; a record the vendor refuses fails that row alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

ObjectKind = Literal["contact", "deal"]
Outcome = Literal["created", "updated", "unchanged", "deleted", "failed"]
WriteMode = Literal["upsert", "update_only", "create_only"]
TokenSink = Callable[[dict[str, str]], None]
"""Keeps what a token refresh gave (``access_token``, a rotated ``refresh_token``, a new
``api_domain``) with the stored credentials, so the next run starts from them."""


@dataclass(frozen=True)
class Record:
    """One record as the CRM holds it, in CRM field names: its CRM id, our sync key value
    (None for a record the hub has not seen), its fields and the vendor's last-modified
    time (what field-level last-write-wins compares)."""

    crm_id: str
    key: str | None
    fields: dict[str, Any]
    modified_at: datetime
    deleted: bool = False


@dataclass(frozen=True)
class RowResult:
    """The vendor's answer for one row of a batch write."""

    key: str
    outcome: Outcome
    crm_id: str | None = None
    error: str | None = None
    modified_at: datetime | None = None
    """The vendor's last-modified time after our write: a pulled record with this time is
    our own write read back (echo suppression)."""


@dataclass(frozen=True)
class Changes:
    """One page of records changed since a time; ``cursor`` continues it (None: done)."""

    records: list[Record]
    cursor: str | None = None


class ConnectorError(Exception):
    """A call failed as a whole; ``retryable`` says whether the next run may succeed."""

    retryable = True


class RateLimited(ConnectorError):
    """The vendor asked us to wait (HubSpot and Pipedrive 429, Salesforce 403
    ``REQUEST_LIMIT_EXCEEDED``)."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(detail or f"rate limited; retry after {retry_after:g} s")
        self.retry_after = retry_after


class Unavailable(ConnectorError):
    """The vendor did not answer or answered 5xx."""


class Unauthorized(ConnectorError):
    """The credentials are wrong (not an expired token: that is refreshed)."""

    retryable = False


def user_lookup(
    cache: dict[str, str | None], user_id: str, fetch: Callable[[str], str | None]
) -> str | None:
    """``fetch(user_id)`` once per user for a connector's life; a user the CRM refuses to
    show (not found, or no longer visible) is None rather than a failed run."""
    if user_id not in cache:
        try:
            cache[user_id] = fetch(user_id)
        except ConnectorError as exc:
            if exc.retryable or isinstance(exc, Unauthorized):
                raise
            cache[user_id] = None
    return cache[user_id]


@dataclass(frozen=True)
class CheckReport:
    """``revhub crm test NAME``: do the credentials work, do the mapped fields exist."""

    authenticated: bool
    missing_fields: dict[str, list[str]] = field(default_factory=dict)
    detail: str = ""


class Connector(Protocol):
    """A CRM as the sync engine sees it."""

    name: str
    batch_size: int

    def check(self, fields: dict[ObjectKind, Sequence[str]]) -> CheckReport:
        """Authenticate and confirm the mapped CRM fields exist on each object."""
        ...

    def write(
        self, kind: ObjectKind, rows: Sequence[dict[str, Any]], mode: WriteMode = "upsert"
    ) -> list[RowResult]:
        """Write ``rows`` (CRM field names, each with the sync key) in the vendor's batch
        form, creating, updating or both as ``mode`` says; one result per row, in order."""
        ...

    def update_by_id(
        self, kind: ObjectKind, rows: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[RowResult]:
        """Update records by the CRM's own id (``(crm_id, fields)``): deals the hub learnt
        by pulling them carry no hub key the keyed write could find. One result per row,
        in order; a record that is gone fails its row."""
        ...

    def changes(self, kind: ObjectKind, since: datetime, cursor: str | None = None) -> Changes:
        """Records modified at or after ``since``, one page at a time."""
        ...

    def user_email(self, user_id: str) -> str | None:
        """The e-mail of the CRM user with ``user_id`` (a record's owner, which HubSpot and
        Pipedrive give as a numeric id); None for a user the CRM does not know."""
        ...

    def delete(self, kind: ObjectKind, crm_ids: Sequence[str]) -> list[RowResult]:
        """Remove (archive) records the hub deleted, for the ``mirror`` mode."""
        ...


def vendor_time(value: Any) -> datetime | None:
    """A vendor's ISO 8601 time (``Z``, an offset, or none, which every contract here means
    as UTC) as an aware UTC datetime; None when absent."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_in(headers: Mapping[str, str], *names: str) -> float | None:
    """The first of ``names`` holding a number of seconds (``Retry-After`` and the
    vendors' reset headers); None when none does."""
    for name in names:
        value = headers.get(name)
        if value and value.replace(".", "", 1).isdigit():
            return float(value)
    return None


def field_report(
    fields: dict[ObjectKind, Sequence[str]],
    missing_of: Callable[[ObjectKind, Sequence[str]], list[str]],
) -> CheckReport:
    """The check every connector makes: for each object, the wanted fields the CRM lacks
    (``missing_of`` asks the vendor); refused credentials end it as not authenticated."""
    missing: dict[str, list[str]] = {}
    try:
        for kind, wanted in fields.items():
            gaps = missing_of(kind, wanted)
            if gaps:
                missing[kind] = gaps
    except Unauthorized as exc:
        return CheckReport(authenticated=False, detail=str(exc))
    detail = "every mapped field exists" if not missing else "some fields are missing"
    return CheckReport(authenticated=True, missing_fields=missing, detail=detail)


def pages(connector: Connector, kind: ObjectKind, since: datetime) -> Iterator[Record]:
    """Every record changed since ``since``, following the connector's cursors."""
    cursor: str | None = None
    while True:
        page = connector.changes(kind, since, cursor)
        yield from page.records
        if page.cursor is None:
            return
        cursor = page.cursor
