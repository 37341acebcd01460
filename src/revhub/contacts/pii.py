"""Personal data at rest (DESIGN §6): sealed values and the blind indexes that find them.

One :class:`Pii` per process holds the PII box (current secret plus any
``REVHUB_PII_PREVIOUS_KEYS``) and the index key. Indexes are taken over normalised values
(e-mail trimmed and lower-cased, phone in E.164) so equal people give equal indexes.
"""

from __future__ import annotations

from functools import lru_cache

from revhub.core.crypto import SecretBox, blind_index
from revhub.core.settings import Settings

PURPOSE = "pii"


class Pii:
    def __init__(self, secret: bytes, previous: tuple[bytes, ...] = ()) -> None:
        self._secret = secret
        self.box = SecretBox(secret, PURPOSE, previous)

    def seal(self, value: str | None) -> str | None:
        return None if value is None else self.box.seal(value)

    def open(self, token: str | None) -> str | None:
        return None if token is None else self.box.open(token)

    def index(self, kind: str, normalised: str) -> str:
        return blind_index(self._secret, f"{PURPOSE}:{kind}", normalised)

    def email_index(self, email: str) -> str:
        return self.index("email", normalise_email(email))


def normalise_email(value: str) -> str:
    """Addresses compare case-insensitively here: ``John@Example.COM`` is ``john@example.com``
    (the one spelling blind indexes and the lead data-quality engine use)."""
    return value.strip().lower()


@lru_cache(maxsize=8)
def _cached(secret: bytes, previous: tuple[bytes, ...]) -> Pii:
    return Pii(secret, previous)


def pii_for(settings: Settings) -> Pii:
    """The process's PII keys (HKDF derivation is done once per secret set)."""
    return _cached(settings.secrets["pii_key"], tuple(settings.pii_previous))
