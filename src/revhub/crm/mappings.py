"""Field mappings between the hub and each CRM, held as configuration.

The defaults (``mappings_default.yaml``) are seed 002's Salesforce and HubSpot mappings and
an equivalent Pipedrive one on custom fields. A mapping document is validated on load: an
unknown hub field, an owner or mode that does not exist, a sync key that is not mapped, or
two hub fields on one CRM field are refused with the path of the mistake, so a bad file
stops the hub at start-up instead of corrupting a sync.

Ownership (vendor-specs README, seed 000 "last_write_wins_with_audit_trail"): ``marketing``
fields are written by the hub and never read back over the hub's value; ``crm`` fields are
read from the CRM and never written; ``shared`` fields go both ways and the later write wins
field by field. ``critical`` fields never resolve automatically.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from revhub.core.errors import ConfigurationError

CRMS = ("salesforce", "hubspot", "pipedrive")

HUB_FIELDS: dict[str, frozenset[str]] = {
    "contact": frozenset(
        {
            "lead_id", "email", "first_name", "last_name", "company", "phone", "job_title",
            "country", "lead_score", "lead_source", "campaign_id", "stage", "owner_email",
            "first_conversion_date", "recent_conversion_date", "last_campaign_interaction",
        }
    ),
    "deal": frozenset(
        {
            "deal_id", "name", "amount", "currency", "stage", "is_closed", "is_closed_won",
            "opened_at", "closed_at", "owner_email", "account_domain", "primary_campaign_id",
            "lead_id", "contact_crm_id",
        }
    ),
}  # fmt: skip


class Owner(StrEnum):
    MARKETING = "marketing"
    CRM = "crm"
    SHARED = "shared"


class Mode(StrEnum):
    """Sync behaviours of sync tools (vendor-specs README): ``mirror`` also deletes."""

    UPSERT = "upsert"
    UPDATE_ONLY = "update_only"
    CREATE_ONLY = "create_only"
    MIRROR = "mirror"


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    MONEY = "money"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    EMAIL_LIST = "email_list"
    OWNER = "owner"
    """A CRM user id (HubSpot ``hubspot_owner_id``, Pipedrive ``owner_id``), read as that
    user's e-mail: the hub knows its reps by e-mail."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMap(_Strict):
    """One hub field's CRM field (dotted for nested values), owner, type and picklist map
    (CRM value -> hub value)."""

    crm: str = Field(min_length=1)
    owner: Owner
    type: FieldType = FieldType.TEXT
    values: dict[str, str] = Field(default_factory=dict)

    def to_hub(self, value: Any) -> Any:
        """A CRM value as the hub holds it."""
        if value is None or value == "":
            return None
        if self.values:
            return self.values.get(str(value), str(value))
        return _parse(self.type, value)

    def to_crm(self, value: Any) -> Any:
        """A hub value as the CRM takes it."""
        if value is None:
            return None
        if self.values:
            reverse = {hub: crm for crm, hub in self.values.items()}
            return reverse.get(str(value), str(value))
        return _render(self.type, value)


class ObjectMap(_Strict):
    object: str = Field(min_length=1)
    mode: Mode
    key: str
    fields: dict[str, FieldMap]

    @model_validator(mode="after")
    def _key_is_mapped(self) -> ObjectMap:
        if self.key not in self.fields:
            raise ValueError(f"key {self.key!r} is not one of the mapped fields")
        seen: dict[str, str] = {}
        for name, mapped in self.fields.items():
            if mapped.crm in seen:
                raise ValueError(f"{name} and {seen[mapped.crm]} both map to {mapped.crm!r}")
            seen[mapped.crm] = name
        return self


class CrmMap(_Strict):
    contact: ObjectMap
    deal: ObjectMap


class Mappings(_Strict):
    critical: frozenset[str]
    salesforce: CrmMap
    hubspot: CrmMap
    pipedrive: CrmMap

    @model_validator(mode="after")
    def _hub_fields_exist(self) -> Mappings:
        for crm in CRMS:
            for kind, known in HUB_FIELDS.items():
                unknown = set(getattr(getattr(self, crm), kind).fields) - known
                if unknown:
                    names = ", ".join(sorted(unknown))
                    raise ValueError(f"{crm}.{kind}: no hub field {names}")
        every = HUB_FIELDS["contact"] | HUB_FIELDS["deal"]
        if self.critical - every:
            raise ValueError(f"critical: no hub field {', '.join(sorted(self.critical - every))}")
        return self

    def of(self, crm: str) -> CrmMap:
        if crm not in CRMS:
            raise KeyError(crm)
        result: CrmMap = getattr(self, crm)
        return result


def parse_mappings(document: dict[str, Any], *, source: str) -> Mappings:
    """Validate a mapping document; a mistake is a ConfigurationError naming its path."""
    try:
        return Mappings.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"CRM field mappings in {source} are invalid: {problems}") from exc


def default_text() -> str:
    """The shipped mapping document (seed 002's), comments included."""
    return resources.files("revhub.crm").joinpath("mappings_default.yaml").read_text()


@cache
def default_mappings() -> Mappings:
    return parse_mappings(yaml.safe_load(default_text()), source="mappings_default.yaml")


def load_mappings(path: Path | None) -> Mappings:
    """The mappings of ``REVHUB_CRM_MAPPINGS`` (a whole document, as ``revhub crm
    mappings`` prints it), else the defaults; re-read when the file changes."""
    if path is None:
        return default_mappings()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigurationError(
            f"REVHUB_CRM_MAPPINGS: cannot read {path} ({exc.strerror}); write one with "
            "`revhub crm mappings > FILE` or unset the variable for the defaults."
        ) from exc
    return _load(path, stamp)


@cache
def _load(path: Path, stamp: int) -> Mappings:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"REVHUB_CRM_MAPPINGS: {path} is not YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"REVHUB_CRM_MAPPINGS: {path} holds no mapping document")
    return parse_mappings(document, source=str(path))


def _parse(kind: FieldType, value: Any) -> Any:
    try:
        if kind is FieldType.NUMBER:
            return float(value)
        if kind is FieldType.MONEY:
            return Decimal(str(value))
        if kind is FieldType.BOOLEAN:
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if kind is FieldType.DATE:
            return date.fromisoformat(str(value)[:10])
        if kind is FieldType.DATETIME:
            return _datetime(value)
        if kind is FieldType.EMAIL_LIST:
            return _primary_email(value)
    except (ValueError, InvalidOperation) as exc:
        raise ValueError(f"not a {kind.value}: {value!r}") from exc
    return str(value)


def _render(kind: FieldType, value: Any) -> Any:
    if kind is FieldType.MONEY:
        return str(Decimal(value))
    if kind in (FieldType.DATE, FieldType.DATETIME) and isinstance(value, date):
        return value.isoformat()
    if kind is FieldType.EMAIL_LIST:
        return [{"value": value, "primary": True, "label": "work"}]
    return value


def _datetime(value: Any) -> datetime:
    """ISO 8601 text or epoch milliseconds (HubSpot), as aware UTC."""
    if isinstance(value, int | float) or str(value).isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _primary_email(value: Any) -> str | None:
    """Pipedrive's ``emails`` list: the primary address (else the first)."""
    if isinstance(value, str):
        return value
    entries = [e for e in value if isinstance(e, dict) and e.get("value")]
    primary = [e for e in entries if e.get("primary")] or entries
    return str(primary[0]["value"]) if primary else None
