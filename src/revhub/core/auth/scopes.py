"""Roles and the scopes they grant (seed 000 "Security Framework": RBAC by domain).

A scope is ``<domain>:read`` or ``<domain>:write`` for each business domain, plus ``admin``
(keys, audit, jobs, dead letters) and ``metrics:read`` (Prometheus scraping). Each domain role
reads and writes its own domain only; ``analyst`` reads everything and writes nothing;
``admin`` holds every scope.
"""

from __future__ import annotations

from enum import StrEnum

DOMAINS = ("marketing", "sales", "product", "success", "finance")
ADMIN = "admin"
METRICS_READ = "metrics:read"


class Role(StrEnum):
    ADMIN = "admin"
    MARKETING = "marketing"
    SALES = "sales"
    PRODUCT = "product"
    SUCCESS = "success"
    FINANCE = "finance"
    ANALYST = "analyst"


def read(domain: str) -> str:
    return f"{domain}:read"


def write(domain: str) -> str:
    return f"{domain}:write"


ALL_SCOPES: dict[str, str] = {
    **{read(d): f"Read {d} data" for d in DOMAINS},
    **{write(d): f"Create and change {d} data" for d in DOMAINS},
    ADMIN: "Administer the hub: credentials, audit trail, jobs, dead letters",
    METRICS_READ: "Scrape /metrics",
}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(ALL_SCOPES),
    Role.ANALYST: frozenset({read(d) for d in DOMAINS} | {METRICS_READ}),
    **{Role(d): frozenset({read(d), write(d)}) for d in DOMAINS},
}


def scope_domain(scope: str) -> str:
    """The rate-limit domain of a scope: ``sales:write`` → ``sales``, ``admin`` → ``admin``."""
    return scope.split(":", 1)[0]
