"""Credential use cases: create, list and revoke API keys; authenticate; issue OAuth tokens.

Keys are 256-bit random strings, so a single SHA-256 is the right stored form (as GitHub and
Stripe do): a slow password hash would add tens of milliseconds to every request and buys
nothing against a secret that cannot be guessed. Look-up is by a short prefix, comparison
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from revhub.core.auth.models import ApiKey
from revhub.core.auth.principal import Principal
from revhub.core.auth.schemas import AccessToken, ApiKeyCreate
from revhub.core.auth.scopes import ROLE_SCOPES, Role
from revhub.core.db import get_or_404
from revhub.core.errors import BadRequest, RevHubError, Unauthenticated
from revhub.core.events.outbox import publish
from revhub.core.pagination import newest_first

KEY_MARK = "rhk_"
PREFIX_LEN = 12
JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "revhub-api"
LAST_USED_RESOLUTION = timedelta(minutes=1)
KEY_RECHECK_SECONDS = 1.0


class OAuthError(RevHubError):
    """An RFC 6749 §5.2 error, as problem+json carrying ``error`` / ``error_description``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status, f"oauth-{error.replace('_', '-')}", "OAuth error", description)
        self.oauth_error = error


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    session: Session, *, key_in: ApiKeyCreate, created_by: str, now: datetime
) -> tuple[ApiKey, str]:
    """A new key and its clear text, which is returned here and never again."""
    token = KEY_MARK + secrets.token_urlsafe(32)
    expires = now + timedelta(days=key_in.expires_in_days) if key_in.expires_in_days else None
    key = ApiKey(
        name=key_in.name,
        role=key_in.role.value,
        prefix=token[:PREFIX_LEN],
        secret_hash=_hash(token),
        created_by=created_by,
        created_at=now,
        expires_at=expires,
    )
    session.add(key)
    session.flush()
    _announce(session, "api_key.created", key)
    return key, token


def get_key(session: Session, *, key_id: uuid.UUID) -> ApiKey:
    return get_or_404(session, ApiKey, key_id, label="API key")


def list_keys(
    session: Session, *, include_revoked: bool, after: uuid.UUID | None, limit: int
) -> list[ApiKey]:
    """Keys newest first; ``after`` is the id of the key the previous page ended on."""
    query = newest_first(session, ApiKey, after=after).limit(limit)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [*session.scalars(query)]


def revoke_key(session: Session, *, key_id: uuid.UUID, now: datetime) -> ApiKey:
    """Revoke at once; revoking twice keeps the first time."""
    key = get_key(session, key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = now
        session.flush()
        _announce(session, "api_key.revoked", key)
    return key


def _announce(session: Session, event_type: str, key: ApiKey) -> None:
    """Credential changes go on the ``platform`` topic (a security channel can subscribe)."""
    publish(
        session,
        topic="platform",
        event_type=event_type,
        tenant_id="platform",
        payload={
            "key_id": str(key.id),
            "name": key.name,
            "role": key.role,
            "created_by": key.created_by,
        },
    )


def _active_key(session: Session, token: str, now: datetime) -> ApiKey | None:
    if not token.startswith(KEY_MARK) or len(token) < PREFIX_LEN + 8:
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == token[:PREFIX_LEN])).first()
    if key is None or not hmac.compare_digest(key.secret_hash, _hash(token)):
        return None
    return key if key.is_active(now) else None


def authenticate_key(session: Session, *, token: str, now: datetime) -> Principal:
    """The principal of an API key; 401 if it is unknown, revoked or expired."""
    check = verify_key(session, token=token, now=now)
    if check.stale:
        note_use(session, key_id=check.principal.credential_id, now=now)
    return check.principal


@dataclass(frozen=True)
class KeyCheck:
    principal: Principal
    stale: bool
    """Its ``last_used_at`` is older than ``LAST_USED_RESOLUTION``: write the use."""
    expires_at: datetime | None


def verify_key(session: Session, *, token: str, now: datetime) -> KeyCheck:
    """The principal of an API key (401 if it is unknown, revoked or expired). Only reads,
    so a request authenticates on a read-only session and writes the last use, when due,
    on its own."""
    key = _active_key(session, token, now)
    if key is None:
        raise Unauthenticated("The API key is unknown, revoked or expired.")
    stale = key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION
    principal = _principal(key, ROLE_SCOPES[Role(key.role)], "api_key")
    return KeyCheck(principal, stale, key.expires_at)


class RecentKeys:
    """API keys this process found valid in the last ``recheck_s`` seconds, by the token's
    hash: a request with one skips the database, and the thread it would have needed for
    it (at 150 single leads a second the check and its thread hop were a tenth of the
    server's CPU).

    A key revoked through this process is refused at once (:meth:`forget`); one revoked
    elsewhere (another API process, ``revhub keys revoke``) at most ``recheck_s`` later,
    when the key is looked up again; an expired key at once, since its expiry is kept."""

    def __init__(self, recheck_s: float = KEY_RECHECK_SECONDS, capacity: int = 10_000) -> None:
        self._recheck_s, self._capacity = recheck_s, capacity
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[KeyCheck, float]] = {}
        self._revoked: set[uuid.UUID] = set()

    def get(self, token: str, now: datetime) -> Principal | None:
        with self._lock:
            entry = self._seen.get(_hash(token))
        if entry is None:
            return None
        check, seen_at = entry
        if time.monotonic() - seen_at > self._recheck_s:
            return None
        if check.expires_at is not None and check.expires_at <= now:
            return None
        if check.principal.credential_id in self._revoked:
            return None
        return check.principal

    def keep(self, token: str, check: KeyCheck) -> None:
        with self._lock:
            if len(self._seen) >= self._capacity:
                self._seen.clear()
            self._seen[_hash(token)] = (check, time.monotonic())

    def forget(self, key_id: uuid.UUID) -> None:
        """``key_id`` was revoked: never answer for it again (revocation is final)."""
        with self._lock:
            self._revoked.add(key_id)


def note_use(session: Session, *, key_id: uuid.UUID, now: datetime) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def _principal(key: ApiKey, scopes: frozenset[str], via: str) -> Principal:
    return Principal(key.id, key.name, key.role, scopes, via)  # type: ignore[arg-type]


def issue_token(
    session: Session,
    *,
    client_id: str,
    client_secret: str,
    scope: str | None,
    signing_key: bytes,
    ttl_seconds: int,
    now: datetime,
) -> tuple[AccessToken, Principal]:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4): a short-lived JWT with scopes.

    The requested scopes must be a subset of the key's role; none requested means all of them.
    """
    key = _active_key(session, client_secret, now)
    if key is None or str(key.id) != client_id.strip().lower():
        raise OAuthError(401, "invalid_client", "Unknown client, wrong secret, or a revoked key.")
    granted = ROLE_SCOPES[Role(key.role)]
    wanted = frozenset(scope.split()) if scope else granted
    if not wanted <= granted:
        extra = " ".join(sorted(wanted - granted))
        raise OAuthError(400, "invalid_scope", f"Role {key.role!r} cannot have: {extra}.")
    claims = {
        "iss": "revhub",
        "aud": JWT_AUDIENCE,
        "sub": str(key.id),
        "name": key.name,
        "role": key.role,
        "scope": " ".join(sorted(wanted)),
        "jti": uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl_seconds,
    }
    token = jwt.encode(claims, signing_key, algorithm=JWT_ALGORITHM)
    access = AccessToken(access_token=token, expires_in=ttl_seconds, scope=claims["scope"])
    return access, _principal(key, wanted, "oauth")


def authenticate_jwt(token: str, *, signing_key: bytes) -> Principal:
    """The principal of an access token; 401 if it is forged, expired or malformed."""
    try:
        claims = jwt.decode(
            token,
            signing_key,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer="revhub",
            options={"require": ["exp", "sub", "scope", "role"]},
        )
        return Principal(
            uuid.UUID(claims["sub"]),
            str(claims.get("name", "")),
            str(claims["role"]),
            frozenset(str(claims["scope"]).split()),
            "oauth",
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("The access token has expired; request a new one.") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise Unauthenticated("The access token is not valid.") from exc


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        roles = ", ".join(r.value for r in Role)
        raise BadRequest(f"Unknown role {value!r}; choose one of: {roles}.") from exc
