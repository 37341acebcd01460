"""Every operation in the generated OpenAPI document rejects missing and wrong-domain
credentials, and only an explicit short list of routes is public."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from revhub.core.auth.scopes import ROLE_SCOPES, Role

PUBLIC_PATHS = {"/healthz", "/readyz", "/api/v1/oauth/token"}
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
ANY_CREDENTIAL = {("GET", "/api/v1/auth/me")}
SAMPLE_PATH_VALUES = {"key_id": "00000000-0000-4000-8000-000000000000"}


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    document = app.openapi()
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


def _all_routes(routes: list[Any]) -> Iterator[Any]:
    """Routes, looking inside included routers (FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is None:
            yield route
        else:
            yield from _all_routes(inner)


def _required_scopes(op: dict[str, Any]) -> set[str]:
    return {
        scope
        for requirement in op.get("security", [])
        for scopes in requirement.values()
        for scope in scopes
    }


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PATH_VALUES.get(m.group(1), "x"), path)


def _role_without(scopes: set[str]) -> Role:
    """A role that lacks every scope the operation needs: a credential of another domain."""
    return next(r for r in Role if r != Role.ADMIN and not scopes & ROLE_SCOPES[r])


def test_public_routes_are_only_the_allow_list(app: FastAPI) -> None:
    unprotected = {path for _m, path, op in _operations(app) if not op.get("security")}
    assert unprotected <= PUBLIC_PATHS
    routes = list(_all_routes(app.routes))
    hidden = {r.path for r in routes if isinstance(r, APIRoute) and not r.include_in_schema}
    assert hidden == set(), "every API route must be in the OpenAPI document to be checked"
    plain = {getattr(r, "path", None) for r in routes if not isinstance(r, APIRoute)}
    assert plain == DOCS_PATHS


def test_every_operation_declares_a_scope_or_is_listed(app: FastAPI) -> None:
    for method, path, op in _operations(app):
        if path in PUBLIC_PATHS or (method, path) in ANY_CREDENTIAL:
            continue
        assert _required_scopes(op), f"{method} {path} declares no scope"


def test_no_credentials_gives_401_everywhere(client: TestClient, app: FastAPI) -> None:
    checked = 0
    for method, path, _op in _operations(app):
        if path in PUBLIC_PATHS:
            continue
        response = client.request(method, _url(path))
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 6


def test_a_bogus_credential_gives_401_everywhere(client: TestClient, app: FastAPI) -> None:
    for method, path, _op in _operations(app):
        if path in PUBLIC_PATHS:
            continue
        for headers in (
            {"X-API-Key": "rhk_not-a-real-key-at-all-000000"},
            {"Authorization": "Bearer not.a.jwt"},
        ):
            response = client.request(method, _url(path), headers=headers)
            assert response.status_code == 401, f"{method} {path} {headers}"


def test_a_credential_of_another_domain_gives_403_everywhere(
    client: TestClient, app: FastAPI, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    checked = 0
    for method, path, op in _operations(app):
        needed = _required_scopes(op)
        if not needed:
            continue
        role = _role_without(needed)
        response = client.request(method, _url(path), headers=auth_headers(role.value))
        assert response.status_code == 403, f"{method} {path} as {role}: {response.status_code}"
        body = response.json()
        assert body["type"].endswith("/forbidden")
        assert sorted(needed)[0] in body["detail"]
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("role", [r.value for r in Role if r != Role.ADMIN])
def test_domain_roles_cannot_administer(
    client: TestClient, role: str, auth_headers: Callable[[str], dict[str, str]]
) -> None:
    headers = auth_headers(role)
    assert client.get("/api/v1/keys", headers=headers).status_code == 403
    assert client.get("/api/v1/audit", headers=headers).status_code == 403
    assert client.get("/api/v1/auth/me", headers=headers).json()["role"] == role


def test_analyst_reads_everything_and_writes_nothing() -> None:
    analyst = ROLE_SCOPES[Role.ANALYST]
    assert all(s.endswith(":read") for s in analyst)
    domains = {s.split(":")[0] for s in ROLE_SCOPES[Role.ADMIN] if s.endswith(":read")}
    assert {s.split(":")[0] for s in analyst} == domains
