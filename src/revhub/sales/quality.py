"""Lead data quality: validate, normalise, enrich and score a lead before anything stores it.

Pure functions, no database and no network: :func:`clean_lead` turns a :class:`RawLead` into a
:class:`CleanLead` (or raises :class:`InvalidInput` naming every bad field at once), and the
fuzzy helpers flag leads that are probably the same person at the same company. Exact duplicates
(same normalised e-mail) are the caller's blind-index look-up, keyed by
:func:`revhub.contacts.pii.normalise_email`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from rapidfuzz import fuzz

from revhub.core.errors import FieldError, InvalidInput

FREE_MAILBOX_DOMAINS: Final = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk",
        "live.com", "msn.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "icloud.com",
        "me.com", "mac.com", "proton.me", "protonmail.com", "pm.me", "aol.com", "web.de",
        "t-online.de", "mail.ru", "qq.com", "163.com", "126.com", "zoho.com",
    }
)  # fmt: skip
FREE_MAILBOX_BRANDS: Final = frozenset({"gmx", "yandex"})
ROLE_LOCAL_PARTS: Final = frozenset(
    {"info", "sales", "admin", "contact", "support", "noreply", "no-reply", "hello", "marketing"}
)
COUNTRY_NAMES: Final[Mapping[str, str]] = {
    "united states": "US", "united states of america": "US", "usa": "US", "us": "US",
    "america": "US", "united kingdom": "GB", "uk": "GB", "great britain": "GB",
    "britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "germany": "DE",
    "deutschland": "DE", "france": "FR", "spain": "ES", "italy": "IT", "netherlands": "NL",
    "the netherlands": "NL", "holland": "NL", "belgium": "BE", "switzerland": "CH",
    "austria": "AT", "ireland": "IE", "portugal": "PT", "poland": "PL", "sweden": "SE",
    "norway": "NO", "denmark": "DK", "finland": "FI", "canada": "CA", "mexico": "MX",
    "brazil": "BR", "australia": "AU", "new zealand": "NZ", "india": "IN", "china": "CN",
    "japan": "JP", "singapore": "SG", "south korea": "KR", "israel": "IL",
    "south africa": "ZA", "united arab emirates": "AE", "uae": "AE",
}  # fmt: skip
# phonenumbers' regions are ISO 3166-1 alpha-2 save two ITU-only codes and seven uninhabited places.
ISO_ALPHA2: Final = (phonenumbers.SUPPORTED_REGIONS - {"AC", "TA"}) | {
    "AQ", "BV", "GS", "HM", "PN", "TF", "UM",
}  # fmt: skip
LEGAL_SUFFIXES: Final = frozenset(
    {"inc", "incorporated", "llc", "ltd", "limited", "gmbh", "ag", "sa", "sas", "bv", "plc"}
    | {"corp", "corporation", "co", "company", "pty"}
)
DEDUCTIONS: Final[Mapping[str, int]] = {
    "no_last_name": 10, "no_job_title": 10, "no_phone": 5, "invalid_phone": 15,
    "free_mailbox": 15, "role_address": 10, "no_country": 5, "no_source": 10,
}  # fmt: skip
LIKELY_DUPLICATE: Final = 90.0
REQUIRED_FIELDS: Final = ("email", "first_name", "company")

_HOST = re.compile(r"(?:[\w-]+\.)+[\w-]{2,}")
_JOINED = re.compile("[.'\u2019]")
_SEPARATORS = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class RawLead:
    """A lead as it arrives from a form, an import or a connector; ``None`` means absent."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    phone: str | None = None
    job_title: str | None = None
    country: str | None = None
    website: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class CleanLead:
    """A lead fit to store: normalised fields, a 0..100 score and why it is not 100."""

    email: str
    first_name: str
    last_name: str | None
    company: str
    company_domain: str | None
    phone: str | None
    job_title: str | None
    country: str | None
    source: str | None
    quality_score: int
    problems: tuple[str, ...]
    transformations: tuple[str, ...]


class NamedLead(Protocol):
    """What fuzzy matching reads: a :class:`CleanLead` or a stored lead with these attributes."""

    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def company(self) -> str: ...


SEALED_FIELDS = frozenset({"email", "first_name", "last_name", "phone"})
"""The fields encrypted at rest (DESIGN §6). A note about one says what was done to it and
never quotes it: the notes are stored with each capture (``lead_capture.steps``) and travel
in its ``lead.processed`` event to the consumers and webhooks, where a quoted name or phone
number would be readable."""


@dataclass
class _Notes:
    """Problems (each with the points it cost, if any) and transformations, as they happen."""

    problems: list[str] = field(default_factory=list)
    transformations: list[str] = field(default_factory=list)
    deducted: int = 0

    def problem(self, text: str, reason: str | None = None) -> None:
        points = DEDUCTIONS[reason] if reason else 0
        self.problems.append(f"{text} (-{points})" if points else text)
        self.deducted += points

    def changed(self, name: str, before: str, after: str) -> None:
        if before == after:
            return
        if name in SEALED_FIELDS:
            self.transformations.append(f"{name}: {_what_changed(before, after)}")
        else:
            self.transformations.append(f"{name}: {before!r} -> {after!r}")


def _what_changed(before: str, after: str) -> str:
    """A sealed field's change in words: its whitespace tidied, its case changed, or else
    normalised (a phone number to E.164, an e-mail by the validator)."""
    tidied = " ".join(before.split())
    done = ["whitespace tidied"] if tidied != before else []
    if tidied != after:
        done.append("recased" if tidied.lower() == after.lower() else "normalised")
    return " and ".join(done)


def email_domain(email: str) -> str:
    """The lower-cased part after the last ``@`` (a local part may itself hold a quoted ``@``)."""
    return email.rpartition("@")[2].lower()


def is_free_mailbox(domain: str) -> bool:
    """Consumer mailbox providers say nothing about the employer, so they yield no company."""
    domain = domain.lower()
    return domain in FREE_MAILBOX_DOMAINS or domain.split(".", 1)[0] in FREE_MAILBOX_BRANDS


def clean_lead(raw: RawLead, *, prefix: str = "body") -> CleanLead:
    """Validate, normalise and score one lead.

    Raises :class:`InvalidInput` listing every required field (email, first_name, company)
    that is missing or blank and an e-mail of invalid syntax, named ``{prefix}.{field}``.
    Anything else that is wrong is dropped and reported in ``problems``, never an error.

    The score starts at 100 and loses, each loss also listed in ``problems`` as ``(-N)``:

    =============================================  ====
    no last name                                    -10
    no job title (seed 004: required for B2B)       -10
    no phone                                         -5
    phone given but invalid (dropped)               -15
    free/consumer mailbox e-mail                    -15
    role address (info@, sales@, noreply@ ...)      -10
    no country, or one not recognised (dropped)      -5
    no lead source (seed 004: must be attributed)   -10
    =============================================  ====

    The floor is 0. A problem without ``(-N)`` (an unusable website) costs nothing.
    """
    typed_email, typed_first_name, typed_company = _required(raw, prefix)
    notes = _Notes()
    email = _email(raw.email or "", typed_email, notes)
    first_name = _tidy(typed_first_name, "first_name", notes, recase=True)
    last_name = _optional(raw.last_name, "last_name", notes, recase=True)
    company = _tidy(typed_company, "company", notes)
    job_title = _optional(raw.job_title, "job_title", notes)
    country = _country(raw.country, notes)
    phone = _phone(raw.phone, country, notes)
    source = _optional(raw.source, "source", notes)
    for value, reason, text in [
        (last_name, "no_last_name", "last_name: missing"),
        (job_title, "no_job_title", "job_title: missing; B2B leads need one"),
        (source, "no_source", "source: missing; every lead must be attributed"),
    ]:
        if value is None:
            notes.problem(text, reason)
    return CleanLead(
        email=email,
        first_name=first_name,
        last_name=last_name,
        company=company,
        company_domain=_company_domain(raw.website, email, notes),
        phone=phone,
        job_title=job_title,
        country=country,
        source=source,
        quality_score=max(0, 100 - notes.deducted),
        problems=tuple(notes.problems),
        transformations=tuple(notes.transformations),
    )


def _required(raw: RawLead, prefix: str) -> tuple[str, str, str]:
    """E-mail (as ``email_validator`` normalises it), first name and company, all present.

    Every bad field is collected before raising, so one round trip fixes them all.
    """
    errors = [
        FieldError(f"{prefix}.{name}", "is required", "missing")
        for name in REQUIRED_FIELDS
        if not (getattr(raw, name) or "").strip()
    ]
    email = ""
    if raw.email and raw.email.strip():
        try:
            email = validate_email(raw.email.strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            errors.insert(0, FieldError(f"{prefix}.email", str(exc)))
    if errors:
        raise InvalidInput(errors)
    return email, raw.first_name or "", raw.company or ""


def _optional(value: str | None, name: str, notes: _Notes, *, recase: bool = False) -> str | None:
    """:func:`_tidy` for a field that may be absent; blank counts as absent."""
    return _tidy(value, name, notes, recase=recase) if value and value.strip() else None


def _tidy(value: str, name: str, notes: _Notes, *, recase: bool = False) -> str:
    """Trimmed, inner whitespace collapsed; with ``recase``, title-cased only when typed all in
    one case, because "JOHN" is shouting while "mcDonald" is meant."""
    tidy = " ".join(value.split())
    if recase and tidy in (tidy.lower(), tidy.upper()) and tidy.lower() != tidy.upper():
        tidy = tidy.title()
    notes.changed(name, value, tidy)
    return tidy


def _email(typed: str, normalised: str, notes: _Notes) -> str:
    """Local part lower-cased too: mailboxes are matched case-insensitively; role/free flagged."""
    local, _, domain = normalised.rpartition("@")
    email = f"{local.lower()}@{domain.lower()}"
    stripped = typed.strip()
    if stripped != typed:
        notes.transformations.append("email: trimmed")
    if email != stripped:
        lowered = email == stripped.lower()
        notes.transformations.append("email: lower-cased" if lowered else "email: normalised")
    if local.lower().split("+", 1)[0] in ROLE_LOCAL_PARTS:
        notes.problem(f"email: '{local.lower()}@' is a role address, not a person", "role_address")
    if is_free_mailbox(domain):
        notes.problem(f"email: {domain.lower()!r} is a free mailbox provider", "free_mailbox")
    return email


def _country(value: str | None, notes: _Notes) -> str | None:
    """ISO 3166 alpha-2, upper-case, from a code or a common English name; unknown is dropped."""
    text = _optional(value, "country", notes)
    if text is None:
        notes.problem("country: missing", "no_country")
        return None
    key = " ".join(text.casefold().replace(".", "").split())
    code = COUNTRY_NAMES.get(key) or (key.upper() if key.upper() in ISO_ALPHA2 else None)
    if code is None:
        notes.problem(f"country: {text!r} is not a known country; dropped", "no_country")
        return None
    notes.changed("country", text, code)
    return code


def _phone(value: str | None, region: str | None, notes: _Notes) -> str | None:
    """E.164, read with the lead's country as region; without one it must start with ``+``."""
    text = _optional(value, "phone", notes)
    if text is None:
        notes.problem("phone: missing", "no_phone")
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        hint = "" if region or text.startswith("+") else " (no country, so it needs a +)"
        notes.problem(f"phone: not a valid number{hint}; dropped", "invalid_phone")
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    notes.changed("phone", text, e164)
    return e164


def _company_domain(website: str | None, email: str, notes: _Notes) -> str | None:
    """The website's host wins; else the e-mail domain, unless that is a free mailbox."""
    text = (website or "").strip()
    host = _website_host(text) if text else None
    if host:
        notes.transformations.append(f"company_domain: {host!r} from website")
        return host
    if text:
        notes.problem(f"website: {text!r} is not a URL or domain; ignored")
    domain = email_domain(email)
    if is_free_mailbox(domain):
        return None
    notes.transformations.append("company_domain: derived from email")
    return domain


def _website_host(value: str) -> str | None:
    """Host of a URL or bare domain, lower-case, without ``www.``; ``None`` if there is none."""
    try:
        host = urlsplit(value if "://" in value else f"http://{value}").hostname
    except ValueError:
        return None
    host = (host or "").rstrip(".").removeprefix("www.")
    return host if _HOST.fullmatch(host) else None


def normalise_company(name: str) -> str:
    """Casefolded, punctuation gone, trailing legal suffixes dropped: "Acme, Inc." -> "acme".

    Dots and apostrophes join ("L.L.C." -> "llc"); other punctuation separates words. A
    name that is nothing but a suffix ("Company") keeps its last word rather than vanish.
    """
    words = _SEPARATORS.sub(" ", _JOINED.sub("", name.casefold())).split()
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


def company_key(name: str) -> str | None:
    """The key colleagues share (``Contact.company_key``): the normalised name, at most
    200 characters; None when nothing is left."""
    return normalise_company(name)[:200] or None


def name_similarity(first_a: str, last_a: str | None, first_b: str, last_b: str | None) -> float:
    """0..100, token-sort ratio of casefolded full names, so word order does not matter."""
    a = " ".join(f"{first_a} {last_a or ''}".casefold().split())
    b = " ".join(f"{first_b} {last_b or ''}".casefold().split())
    return float(fuzz.token_sort_ratio(a, b)) if a and b else 0.0


def company_similarity(a: str, b: str) -> float:
    """0..100 on :func:`normalise_company`; a name with no letters matches nothing."""
    na, nb = normalise_company(a), normalise_company(b)
    return float(fuzz.token_sort_ratio(na, nb)) if na and nb else 0.0


def likely_duplicate(a: NamedLead, b: NamedLead) -> float | None:
    """The lower of name and company similarity when both reach :data:`LIKELY_DUPLICATE`.

    A hit means "possible duplicate, flag for review": the caller decides, and nothing is
    merged on a fuzzy match alone.
    """
    score = min(
        name_similarity(a.first_name, a.last_name, b.first_name, b.last_name),
        company_similarity(a.company, b.company),
    )
    return score if score >= LIKELY_DUPLICATE else None
