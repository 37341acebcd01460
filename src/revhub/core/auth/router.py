"""Credential endpoints: API keys (admin) and the OAuth 2.0 token endpoint (public)."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Query, Request, Response, status

from revhub.core.auth import schemas
from revhub.core.auth import service as auth
from revhub.core.auth.models import ApiKey
from revhub.core.auth.principal import Principal
from revhub.core.auth.scopes import ADMIN, Role
from revhub.core.db import utcnow
from revhub.core.http import DbSession, draw_rate_limit, hub_of, require, require_credential
from revhub.core.pagination import MAX_LIMIT, cursor_field, next_after
from revhub.core.responses import PROTECTED, PUBLIC, problems
from revhub.core.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["keys"], responses=PROTECTED)
me_router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=PROTECTED)
token_router = APIRouter(prefix="/api/v1/oauth", tags=["oauth"], responses=PUBLIC)


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=schemas.ApiKeyCreated)
def create_key(
    body: schemas.ApiKeyCreate,
    session: DbSession,
    request: Request,
    principal: Annotated[Principal, require(ADMIN)],
) -> schemas.ApiKeyCreated:
    """Create an API key; the key is in this response only."""
    key, token = auth.create_key(session, key_in=body, created_by=principal.name, now=utcnow())
    request.state.resource_id = str(key.id)
    return schemas.ApiKeyCreated.model_validate({**_as_dict(key), "key": token})


@router.get("/keys", response_model=Page[schemas.ApiKey], dependencies=[require(ADMIN)])
def list_keys(
    session: DbSession,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: str | None = None,
) -> Page[schemas.ApiKey]:
    """Keys, newest first."""
    after = cursor_field(cursor, "after", uuid.UUID)
    keys = auth.list_keys(session, include_revoked=include_revoked, after=after, limit=limit)
    next_cursor = next_after(keys, limit)
    return Page(items=[schemas.ApiKey.model_validate(k) for k in keys], next_cursor=next_cursor)


@router.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(404),
    dependencies=[require(ADMIN)],
)
def revoke_key(key_id: uuid.UUID, session: DbSession, request: Request) -> Response:
    """Revoke a key at once (other API processes refuse it within a second). Access tokens
    it obtained expire within REVHUB_TOKEN_TTL_SECONDS."""
    auth.revoke_key(session, key_id=key_id, now=utcnow())
    hub_of(request).recent_keys.forget(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.get("/me", response_model=schemas.Me)
def who_am_i(principal: Annotated[Principal, require_credential()]) -> schemas.Me:
    """The calling credential, its role and the scopes it holds (any valid credential)."""
    return schemas.Me(
        credential_id=principal.credential_id,
        name=principal.name,
        role=Role(principal.role),
        scopes=sorted(principal.scopes),
        via=principal.via,
    )


@token_router.post("/token", response_model=schemas.AccessToken, responses=problems(401, 429))
def issue_token(
    request: Request,
    session: DbSession,
    grant_type: Annotated[str, Form(pattern="^client_credentials$")],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
) -> schemas.AccessToken:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4).

    Authenticate with HTTP Basic or with ``client_id`` and ``client_secret`` form fields;
    the client id is the key's id and the secret is the API key. Attempts are rate-limited
    per client address under the ``oauth`` domain.
    """
    client_ip = request.client.host if request.client else "unknown"
    draw_rate_limit(request, f"ip:{client_ip}:oauth", "oauth")
    basic = _basic_credentials(request.headers.get("authorization"))
    cid, secret = basic or (client_id, client_secret)
    request.state.claimed_actor = f"client:{cid}"
    if not cid or not secret:
        raise auth.OAuthError(401, "invalid_client", "Send client_id and client_secret.")
    hub = hub_of(request)
    access, principal = auth.issue_token(
        session,
        client_id=cid,
        client_secret=secret,
        scope=scope,
        signing_key=hub.settings.secrets["jwt_secret"],
        ttl_seconds=hub.settings.token_ttl_seconds,
        now=utcnow(),
    )
    request.state.principal = principal
    request.state.resource_id = str(principal.credential_id)
    return access


def _as_dict(key: ApiKey) -> dict[str, object]:
    return schemas.ApiKey.model_validate(key).model_dump()


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: client id and secret, form-urlencoded, in HTTP Basic."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise auth.OAuthError(401, "invalid_client", "Malformed Basic credentials.") from exc
    if not sep:
        raise auth.OAuthError(401, "invalid_client", "Basic credentials need 'id:secret'.")
    return unquote_plus(user), unquote_plus(password)
