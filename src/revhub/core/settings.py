"""Configuration from ``REVHUB_*`` environment variables or a ``.env`` file.

Two modes (DESIGN.md §1):

* ``embedded`` (default) — a SQLite file and the local bus under ``REVHUB_DATA_DIR``; the
  signing and encryption secrets are generated on first run and kept in
  ``<data dir>/secrets.json`` (mode 0600) so a restart keeps tokens and ciphertexts valid.
* ``production`` — nothing is generated: the three secrets must be given, so that several
  processes agree on them and a lost data directory cannot silently mint new keys.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from revhub.core.errors import ConfigurationError
from revhub.core.jobs.schedule import problem as schedule_problem
from revhub.core.retry import RetryPolicy

SECRET_NAMES = ("jwt_secret", "pii_key", "audit_key")
MIN_SECRET_LENGTH = 32

WEBHOOK_RETRY_POLICY = RetryPolicy(
    max_attempts=8,
    backoff_strategy="exponential",
    base_delay_ms=30_000,
    max_delay_ms=3_600_000,
)
"""A receiver that is down for an hour still gets its events: 30 s, 1 min, … 1 h (≈ 2 h)."""


class RateLimit(BaseModel):
    """A token bucket: ``rate`` tokens a second refill a bucket holding at most ``burst``."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)
    daily_quota: int = Field(default=0, ge=0, description="requests a UTC day; 0 = no quota")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REVHUB_", env_file=".env", extra="ignore", frozen=True
    )

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path(".revhub")
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = Field(default="revhub:", min_length=1, max_length=64)

    jwt_secret: SecretStr | None = None
    pii_key: SecretStr | None = None
    audit_key: SecretStr | None = None
    pii_previous_keys: list[SecretStr] = Field(
        default_factory=list,
        description="PII secrets rotated away: still open old values until `revhub keys "
        "rotate-pii` has re-sealed them (JSON list)",
    )
    token_ttl_seconds: int = Field(default=900, ge=60, le=3600)

    rate_limit: RateLimit = RateLimit(rate=50, burst=100)
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)

    bus: Literal["local", "redis"] = "local"
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    retry_policies: dict[str, RetryPolicy] = Field(
        default_factory=lambda: {"webhooks": WEBHOOK_RETRY_POLICY}
    )
    visibility_timeout_seconds: float = Field(default=30, gt=0)
    embedded_worker: bool = True
    worker_process: bool = Field(
        default=True,
        description="Embedded mode: run the embedded worker in a child process, on a core of "
        "its own (off: in threads of the API process)",
    )
    capture_process: bool = Field(
        default=True,
        description="Capture single leads in a child process of each API process, on a core "
        "of its own (off: in a thread of the API process)",
    )
    plugins: list[str] = Field(default_factory=list)
    job_schedules: dict[str, str] = Field(default_factory=dict)
    crm_mappings: Path | None = Field(
        default=None,
        description="A YAML file of CRM field mappings replacing the defaults "
        "(`revhub crm mappings` prints them as a starting point)",
    )
    outbox_retention_days: int = Field(default=7, ge=1, le=3650)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_in_flight: int = Field(
        default=256,
        ge=0,
        description="Requests a process works on at once; more are answered 503 at once "
        "(0 = no limit)",
    )
    shed_after_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A request that waited longer for a database slot is answered 503 "
        "unstarted, so an overloaded hub keeps serving fresh requests",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.mode == "production":
            missing = [n for n in SECRET_NAMES if getattr(self, n) is None]
            if missing:
                names = ", ".join(f"REVHUB_{n.upper()}" for n in missing)
                raise ConfigurationError(
                    f"production mode needs {names}: set each to a random string of at least "
                    "32 characters, e.g. the output of "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
            short = [
                f"REVHUB_{n.upper()}"
                for n in SECRET_NAMES
                if len(getattr(self, n).get_secret_value()) < MIN_SECRET_LENGTH
            ]
            if short:
                raise ConfigurationError(
                    f"{', '.join(short)} must be at least {MIN_SECRET_LENGTH} characters long"
                )
            if self.database_url is None:
                raise ConfigurationError(
                    "production mode needs REVHUB_DATABASE_URL "
                    "(e.g. postgresql+psycopg://user@host:5432/revhub)"
                )
        return self

    @model_validator(mode="after")
    def _redis_bus_needs_redis(self) -> Settings:
        if self.bus == "redis" and not self.redis_url:
            raise ConfigurationError(
                "REVHUB_BUS=redis needs REVHUB_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        return self

    @model_validator(mode="after")
    def _job_schedules_are_cron(self) -> Settings:
        for job, expression in self.job_schedules.items():
            if (why := schedule_problem(expression)) is not None:
                raise ConfigurationError(f"REVHUB_JOB_SCHEDULES, job {job!r}: {why}")
        return self

    def policy_for(self, consumer: str) -> RetryPolicy:
        """A consumer's own entry in ``REVHUB_RETRY_POLICIES``, else the default policy."""
        return self.retry_policies.get(consumer, self.retry_policy)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'revhub.db').resolve()}"

    def limit_for(self, domain: str) -> RateLimit:
        """The bucket of a domain: its own entry in ``REVHUB_RATE_LIMITS``, else the default."""
        return self.rate_limits.get(domain, self.rate_limit)

    @property
    def pii_previous(self) -> list[bytes]:
        return [k.get_secret_value().encode() for k in self.pii_previous_keys]

    @cached_property
    def secrets(self) -> dict[str, bytes]:
        """The three secrets as bytes, generating and storing them in embedded mode."""
        given = {n: getattr(self, n) for n in SECRET_NAMES}
        if all(v is not None for v in given.values()):
            return {n: v.get_secret_value().encode() for n, v in given.items()}
        stored = _load_or_create_secrets(self.data_dir / "secrets.json")
        return {
            n: (v.get_secret_value() if v is not None else stored[n]).encode()
            for n, v in given.items()
        }


def _load_or_create_secrets(path: Path) -> dict[str, str]:
    """Read the embedded secrets file, creating it (0600) on first run.

    Processes started together (``serve`` and ``worker``) must end up with the same secrets:
    each writes a complete file under a private name and hard-links it into place, which
    fails if another got there first — then it reads the winner's file instead.
    """
    for _ in range(3):
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [n for n in SECRET_NAMES if n not in stored]
        if not missing:
            return stored
        wanted = {**stored, **{n: secrets.token_urlsafe(32) for n in missing}}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(wanted, fh)
        try:
            if stored:
                tmp.replace(path)  # completing an older file: last writer wins, keys kept
                return wanted
            os.link(tmp, path)
            return wanted
        except FileExistsError:
            continue  # another process created it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    raise ConfigurationError(f"could not create {path}; check the directory's permissions")


def load_settings() -> Settings:
    """Settings from the environment, with a readable error instead of a traceback."""
    try:
        return Settings()
    except ConfigurationError:
        raise
    except ValueError as exc:
        raise ConfigurationError(f"invalid REVHUB_* configuration: {exc}") from exc
