"""One error base for the whole hub, rendered as RFC 9457 ``application/problem+json``.

Services raise subclasses of :class:`RevHubError`; one set of handlers (``problems.py``)
turns them, and every framework error, into a problem document with a stable ``type``, a
``detail`` a person can act on, and per-field ``errors`` where input was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROBLEM_BASE = "https://revhub.dev/problems/"


class BodyTooLarge(Exception):
    """Raised while reading a request body past ``REVHUB_MAX_BODY_BYTES``."""


class NulInBody(Exception):
    """Raised while reading a body holding a NUL character, which no text column can store."""


class ConfigurationError(Exception):
    """The process cannot start as configured; the message says what to set."""


def describe_error(error: BaseException) -> str:
    """An error as stored for people to read later (dead letters, job runs): type and text."""
    return f"{type(error).__name__}: {error}"[:4000]


@dataclass(frozen=True)
class FieldError:
    """One wrong input: where it was (``body.email``, ``query.limit``) and what is wrong."""

    field: str
    message: str
    type: str = "invalid"


@dataclass
class RevHubError(Exception):
    status: int = 500
    type: str = "internal-error"
    title: str = "Internal error"
    detail: str = "The request could not be completed."
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.detail}"


class BadRequest(RevHubError):
    def __init__(self, detail: str, *, type: str = "bad-request") -> None:
        super().__init__(400, type, "Bad request", detail)


class Unauthenticated(RevHubError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            401,
            "unauthenticated",
            "Authentication required",
            detail,
            headers={"WWW-Authenticate": 'Bearer realm="revhub"'},
        )


class Forbidden(RevHubError):
    def __init__(self, detail: str) -> None:
        super().__init__(403, "forbidden", "Forbidden", detail)


class NotFound(RevHubError):
    def __init__(self, resource: str, key: object) -> None:
        super().__init__(404, "not-found", "Not found", f"No {resource} with id {key}.")


class Conflict(RevHubError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, "conflict", "Conflict", detail)


class InvalidInput(RevHubError):
    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        names = ", ".join(e.field for e in errors)
        super().__init__(
            422,
            "validation-error",
            "Invalid input",
            detail or f"Fix these fields and retry: {names}.",
            errors,
        )


class RateLimited(RevHubError):
    def __init__(self, detail: str, headers: dict[str, str]) -> None:
        super().__init__(429, "rate-limited", "Too many requests", detail, headers=headers)


class Overloaded(RevHubError):
    """Shed before any work: the request waited too long for a database slot."""

    def __init__(self, waited: float) -> None:
        super().__init__(
            503,
            "overloaded",
            "Overloaded",
            f"The hub is busy: this request waited {waited:.1f} s for a database slot and was "
            "dropped unstarted. Retry after the Retry-After seconds, or send bulk requests.",
            headers={"Retry-After": "1"},
        )


class ServiceUnavailable(RevHubError):
    def __init__(self, detail: str) -> None:
        super().__init__(503, "unavailable", "Service unavailable", detail)
