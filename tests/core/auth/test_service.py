"""Credential rules, tested without HTTP."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from sqlalchemy.orm import Session

from revhub.core.auth import service as auth
from revhub.core.auth.scopes import ROLE_SCOPES, Role
from revhub.core.db import utcnow
from revhub.core.errors import Unauthenticated
from tests.factories import ApiKeyFactory

SIGNING_KEY = b"k" * 32


def test_only_a_hash_of_the_key_is_stored(session: Session, api_keys: ApiKeyFactory) -> None:
    key, token = api_keys.create(role="sales")
    assert token.startswith("rhk_")
    assert token not in (key.secret_hash, key.prefix)
    assert key.prefix == token[:12]
    assert auth.authenticate_key(session, token=token, now=utcnow()).role == "sales"


def test_a_key_with_one_character_changed_is_rejected(
    session: Session, api_keys: ApiKeyFactory
) -> None:
    _key, token = api_keys.create()
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(Unauthenticated):
        auth.authenticate_key(session, token=forged, now=utcnow())


def test_expired_and_revoked_keys_are_rejected(session: Session, api_keys: ApiKeyFactory) -> None:
    key, token = api_keys.create(expires_in_days=1)
    with pytest.raises(Unauthenticated):
        auth.authenticate_key(session, token=token, now=utcnow() + timedelta(days=2))
    auth.revoke_key(session, key_id=key.id, now=utcnow())
    with pytest.raises(Unauthenticated):
        auth.authenticate_key(session, token=token, now=utcnow())


def test_last_used_is_kept_to_the_minute(session: Session, api_keys: ApiKeyFactory) -> None:
    key, token = api_keys.create()
    first = utcnow()
    auth.authenticate_key(session, token=token, now=first)
    assert key.last_used_at == first
    auth.authenticate_key(session, token=token, now=first + timedelta(seconds=10))
    assert key.last_used_at == first
    later = first + timedelta(minutes=2)
    auth.authenticate_key(session, token=token, now=later)
    assert key.last_used_at == later


def test_token_carries_the_role_scopes_and_expires(
    session: Session, api_keys: ApiKeyFactory
) -> None:
    key, token = api_keys.create(role="finance")
    now = utcnow()
    access, principal = auth.issue_token(
        session,
        client_id=str(key.id),
        client_secret=token,
        scope=None,
        signing_key=SIGNING_KEY,
        ttl_seconds=600,
        now=now,
    )
    assert set(access.scope.split()) == ROLE_SCOPES[Role.FINANCE] == principal.scopes
    assert access.expires_in == 600
    decoded = auth.authenticate_jwt(access.access_token, signing_key=SIGNING_KEY)
    assert decoded.credential_id == key.id and decoded.role == "finance"
    claims = jwt.decode(access.access_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600


def test_a_token_can_be_narrowed_but_not_widened(session: Session, api_keys: ApiKeyFactory) -> None:
    key, token = api_keys.create(role="sales")
    narrow, _ = auth.issue_token(
        session,
        client_id=str(key.id),
        client_secret=token,
        scope="sales:read",
        signing_key=SIGNING_KEY,
        ttl_seconds=600,
        now=utcnow(),
    )
    assert narrow.scope == "sales:read"
    with pytest.raises(auth.OAuthError) as excinfo:
        auth.issue_token(
            session,
            client_id=str(key.id),
            client_secret=token,
            scope="sales:read admin",
            signing_key=SIGNING_KEY,
            ttl_seconds=600,
            now=utcnow(),
        )
    assert excinfo.value.oauth_error == "invalid_scope"
    assert "admin" in excinfo.value.detail


def test_a_secret_presented_with_another_client_id_is_rejected(
    session: Session, api_keys: ApiKeyFactory
) -> None:
    _key, token = api_keys.create()
    other, _ = api_keys.create()
    with pytest.raises(auth.OAuthError) as excinfo:
        auth.issue_token(
            session,
            client_id=str(other.id),
            client_secret=token,
            scope=None,
            signing_key=SIGNING_KEY,
            ttl_seconds=600,
            now=utcnow(),
        )
    assert excinfo.value.status == 401


def test_expired_forged_and_wrong_audience_tokens_are_rejected() -> None:
    now = int(utcnow().timestamp())
    base = {
        "iss": "revhub",
        "aud": "revhub-api",
        "sub": "00000000-0000-4000-8000-000000000000",
        "role": "admin",
        "scope": "admin",
        "iat": now,
    }
    expired = jwt.encode({**base, "exp": now - 1}, SIGNING_KEY, algorithm="HS256")
    forged = jwt.encode({**base, "exp": now + 60}, b"x" * 32, algorithm="HS256")
    wrong_aud = jwt.encode({**base, "aud": "other", "exp": now + 60}, SIGNING_KEY, "HS256")
    unsigned = jwt.encode({**base, "exp": now + 60}, None, algorithm="none")
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate_jwt(expired, signing_key=SIGNING_KEY)
    for token in (forged, wrong_aud, unsigned):
        with pytest.raises(Unauthenticated, match="not valid"):
            auth.authenticate_jwt(token, signing_key=SIGNING_KEY)


def _checked(session: Session, token: str) -> auth.KeyCheck:
    return auth.verify_key(session, token=token, now=utcnow())


def test_a_recent_key_is_answered_until_its_recheck(
    session: Session, api_keys: ApiKeyFactory
) -> None:
    _key, token = api_keys.create(role="sales")
    recent = auth.RecentKeys(recheck_s=0.2)
    assert recent.get(token, utcnow()) is None
    recent.keep(token, _checked(session, token))
    principal = recent.get(token, utcnow())
    assert principal is not None and principal.role == "sales"
    assert recent.get(token[:-1] + "x", utcnow()) is None  # another token, not a prefix match
    time.sleep(0.3)
    assert recent.get(token, utcnow()) is None  # look it up again


def test_a_recent_key_is_refused_once_expired_or_forgotten(
    session: Session, api_keys: ApiKeyFactory
) -> None:
    key, token = api_keys.create(expires_in_days=1)
    recent = auth.RecentKeys(recheck_s=60)
    recent.keep(token, _checked(session, token))
    assert recent.get(token, utcnow() + timedelta(days=2)) is None
    assert recent.get(token, utcnow()) is not None
    recent.forget(key.id)
    assert recent.get(token, utcnow()) is None
    recent.keep(token, _checked(session, token))  # a look-up that raced the revocation
    assert recent.get(token, utcnow()) is None
