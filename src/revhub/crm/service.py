"""CRM connections: stored with their credentials sealed, opened into a connector, checked.

A connection names one CRM account (``name``, e.g. ``hubspot-eu``), its vendor, where its
API lives and its credentials. The credentials are JSON sealed with AES-GCM under a key
derived from the PII secret (purpose ``crm-credentials``), so they are never in the
database in the clear; after a PII key rotation the previous keys still open them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from revhub.contacts.pii import Pii
from revhub.core.crypto import Resealed, SecretBox
from revhub.core.db import Database
from revhub.core.errors import Conflict, FieldError, InvalidInput, NotFound
from revhub.core.settings import Settings
from revhub.crm.connectors.base import CheckReport, Connector, ObjectKind, TokenSink
from revhub.crm.connectors.hubspot import HubSpot, HubSpotAuth
from revhub.crm.connectors.pipedrive import Pipedrive, PipedriveAuth
from revhub.crm.connectors.salesforce import Salesforce, SalesforceAuth
from revhub.crm.mappings import CrmMap, Mappings, load_mappings
from revhub.crm.models import CrmConnection

PURPOSE = "crm-credentials"
CREDENTIAL_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], set[str]]] = {
    "hubspot": ((), ("access_token",), {"refresh_token", "client_id", "client_secret"}),
    "pipedrive": (
        (),
        ("api_token", "access_token"),
        {"refresh_token", "client_id", "client_secret", "oauth_url"},
    ),
    "salesforce": (("client_id",), ("client_secret", "private_key"), {"username", "audience"}),
}
"""Per vendor: the credential fields required, those of which one is required (the
secret or token), and those allowed beside them (what OAuth refreshes with; the JWT
bearer flow's user and audience)."""


@dataclass(frozen=True)
class Check:
    """``revhub crm test``: the connection's answer, per object the mapped fields."""

    connection: str
    crm: str
    report: CheckReport

    @property
    def ok(self) -> bool:
        return self.report.authenticated and not self.report.missing_fields


def credentials_box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secrets["pii_key"], PURPOSE, settings.pii_previous)


def reseal_credentials(session: Session, box: SecretBox, report: Resealed) -> None:
    """After a PII key rotation: each connection's credentials sealed with the current key
    (``revhub keys rotate-pii``; once the old secret is dropped, no other key opens them)."""
    for connection in session.scalars(select(CrmConnection)):
        where = f"crm connection {connection.name}"
        connection.credentials_sealed = report.token(box, where, connection.credentials_sealed)


def mappings_for(settings: Settings) -> Mappings:
    """The field mappings in force: ``REVHUB_CRM_MAPPINGS`` or seed 002's defaults."""
    return load_mappings(settings.crm_mappings)


def add_connection(
    session: Session,
    box: SecretBox,
    *,
    name: str,
    crm: str,
    credentials: dict[str, str],
    base_url: str | None = None,
    currency: str = "USD",
    prefix: str = "",
) -> CrmConnection:
    """Store a connection; its credentials are checked for shape here (errors name
    ``prefix`` + the field: ``body.`` over HTTP) and for validity by :func:`check`."""
    _check_credentials(crm, credentials, prefix)
    if session.scalar(select(CrmConnection).where(CrmConnection.name == name)) is not None:
        raise Conflict(f"A CRM connection named {name!r} exists; pick another name.")
    connection = CrmConnection(
        name=name,
        crm=crm,
        settings={"currency": currency} | ({"base_url": base_url} if base_url else {}),
        credentials_sealed=box.seal(json.dumps(credentials, sort_keys=True)),
    )
    session.add(connection)
    session.flush()
    return connection


def get_connection(session: Session, *, name: str) -> CrmConnection:
    found = session.scalar(select(CrmConnection).where(CrmConnection.name == name))
    if found is None:
        raise NotFound("CRM connection", name)
    return found


def list_connections(session: Session) -> Sequence[CrmConnection]:
    return session.scalars(select(CrmConnection).order_by(CrmConnection.name)).all()


def keep_tokens(db: Database, box: SecretBox, connection_id: uuid.UUID) -> TokenSink:
    """Re-seal the connection's credentials with what a token refresh gave, at once and in
    a transaction of its own: Pipedrive replaces the refresh token on every refresh, so a
    token kept only in memory would leave the next run with a dead one. A new
    ``api_domain`` becomes the connection's API address."""

    def keep(tokens: dict[str, str]) -> None:
        fresh = {k: v for k, v in tokens.items() if k != "api_domain" and v}
        with db.transaction() as session:
            connection = session.get_one(CrmConnection, connection_id)
            stored = json.loads(box.open(connection.credentials_sealed))
            connection.credentials_sealed = box.seal(json.dumps(stored | fresh, sort_keys=True))
            if tokens.get("api_domain"):
                connection.settings = {**connection.settings, "base_url": tokens["api_domain"]}

    return keep


def connector_for(
    connection: CrmConnection, box: SecretBox, mapping: CrmMap, db: Database
) -> Connector:
    """The vendor's connector, keyed by the mapping's sync keys, with the credentials
    opened only for as long as the connector lives (refreshed tokens are kept)."""
    credentials: dict[str, Any] = json.loads(box.open(connection.credentials_sealed))
    keys: dict[ObjectKind, str] = {
        "contact": mapping.contact.fields[mapping.contact.key].crm,
        "deal": mapping.deal.fields[mapping.deal.key].crm,
    }
    objects: dict[ObjectKind, str] = {
        "contact": mapping.contact.object,
        "deal": mapping.deal.object,
    }
    base_url = connection.settings.get("base_url")
    extra = {"base_url": base_url} if base_url else {}
    kept = keep_tokens(db, box, connection.id)
    if connection.crm == "hubspot":
        hubspot = HubSpotAuth(**credentials)
        return HubSpot(auth=hubspot, keys=keys, objects=objects, on_tokens=kept, **extra)
    if connection.crm == "pipedrive":
        pipedrive = PipedriveAuth(**credentials)
        return Pipedrive(auth=pipedrive, keys=keys, objects=objects, on_tokens=kept, **extra)
    if connection.crm == "salesforce":
        login = {"login_url": base_url} if base_url else {}
        fields: dict[ObjectKind, list[str]] = {
            "contact": [f.crm for f in mapping.contact.fields.values()],
            "deal": [f.crm for f in mapping.deal.fields.values()],
        }
        auth = SalesforceAuth(**credentials)
        return Salesforce(auth=auth, keys=keys, objects=objects, fields=fields, **login)
    message = f"no connector for {connection.crm!r}; one of {sorted(CREDENTIAL_FIELDS)}"
    raise InvalidInput([FieldError("crm", message)])


def check_connection(
    session: Session, box: SecretBox, *, name: str, mappings: Mappings, db: Database
) -> Check:
    """Authenticate and confirm every field the mapping names exists on the CRM objects."""
    return check(get_connection(session, name=name), box, mappings, db)


def check(connection: CrmConnection, box: SecretBox, mappings: Mappings, db: Database) -> Check:
    """:func:`check_connection` for a connection already read (no session is needed while
    the CRM answers)."""
    mapping = mappings.of(connection.crm)
    connector = connector_for(connection, box, mapping, db)
    fields: dict[ObjectKind, Sequence[str]] = {
        "contact": [f.crm for f in mapping.contact.fields.values()],
        "deal": [f.crm for f in mapping.deal.fields.values()],
    }
    try:
        report = connector.check(fields)
    finally:
        close = getattr(connector, "close", None)
        if close is not None:
            close()
    return Check(connection=connection.name, crm=connection.crm, report=report)


def _check_credentials(crm: str, credentials: dict[str, str], prefix: str) -> None:
    if crm not in CREDENTIAL_FIELDS:
        message = f"unknown CRM {crm!r}; one of {sorted(CREDENTIAL_FIELDS)}"
        raise InvalidInput([FieldError(f"{prefix}crm", message)])
    required, tokens, optional = CREDENTIAL_FIELDS[crm]
    wrong: list[tuple[str, str]] = [(k, "is required") for k in required if k not in credentials]
    if not set(tokens) & set(credentials):
        others = f" (or {', '.join(tokens[1:])})" if len(tokens) > 1 else ""
        wrong.append((tokens[0], f"is required{others}"))
    if "private_key" in credentials and "username" not in credentials:
        wrong.append(("username", "is required with private_key"))
    unknown = set(credentials) - {*required, *tokens} - optional
    wrong += [(k, f"is not a {crm} credential") for k in sorted(unknown)]
    wrong += [
        (k, "must be a non-empty string")
        for k, v in sorted(credentials.items())
        if k not in unknown and (not isinstance(v, str) or not v.strip())
    ]
    if wrong:
        raise InvalidInput([FieldError(f"{prefix}credentials.{k}", m) for k, m in wrong])


@dataclass
class Target:
    """A connection opened for a sync: its ids, its mapping and a live connector. Built from
    a row read in a short transaction, so no session is held while the CRM answers."""

    connection_id: uuid.UUID
    name: str
    crm: str
    mapping: CrmMap
    critical: frozenset[str]
    connector: Connector
    pii: Pii
    """Seals the personal values the merge keeps (``crm.personal``)."""
    currency: str = "USD"
    """The currency of deal amounts where the CRM's deals carry none (Salesforce and
    HubSpot single-currency accounts): the connection's ``currency`` setting."""

    def close(self) -> None:
        close = getattr(self.connector, "close", None)
        if close is not None:
            close()


def open_target(
    connection: CrmConnection, box: SecretBox, mappings: Mappings, db: Database, pii: Pii
) -> Target:
    chosen = mappings
    mapping = chosen.of(connection.crm)
    return Target(
        connection_id=connection.id,
        name=connection.name,
        crm=connection.crm,
        mapping=mapping,
        critical=chosen.critical,
        connector=connector_for(connection, box, mapping, db),
        pii=pii,
        currency=connection.settings.get("currency", "USD"),
    )
