"""Secrets at rest: AES-256-GCM boxes and blind indexes keyed from configuration (DESIGN §6).

Each purpose (PII, webhook secrets, CRM credentials) gets its own key, derived from the
configured secret with HKDF and the purpose as context, so one leaked derived key opens one
kind of data only.

Rotation: a sealed value carries a fingerprint of the key that sealed it, so a box built
with the new secret and the previous ones opens everything, and :meth:`SecretBox.is_stale`
tells which values to seal again (``revhub keys rotate-pii`` walks the tables with it).
A blind index — HMAC-SHA256 of the normalised value — finds rows by exact value without
decrypting; it is keyed by the current secret and recomputed on rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = b"\x02"
FINGERPRINT_BYTES = 4
NONCE_BYTES = 12


@lru_cache(maxsize=64)
def derive_key(secret: bytes, purpose: str) -> bytes:
    """HKDF-SHA256 of ``secret`` for ``purpose`` (cached: blind indexes derive per call)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret)


def _fingerprint(key: bytes) -> bytes:
    return hmac.new(key, b"revhub-key-id", hashlib.sha256).digest()[:FINGERPRINT_BYTES]


class SecretBox:
    """Seal and open short strings; ``purpose`` is bound in as associated data.

    ``previous`` secrets open what they sealed before a rotation; new values are always
    sealed with ``secret``.
    """

    def __init__(self, secret: bytes, purpose: str, previous: Sequence[bytes] = ()) -> None:
        self._purpose = purpose.encode()
        current = derive_key(secret, purpose)
        self._current = _fingerprint(current)
        self._keys = {
            _fingerprint(k): AESGCM(k)
            for k in (derive_key(s, purpose) for s in (*previous, secret))
        }

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, plaintext.encode(), self._purpose)
        return base64.urlsafe_b64encode(FORMAT + self._current + nonce + sealed).decode()

    def open(self, token: str) -> str:
        """The plaintext; ValueError if the token is damaged or no known key sealed it."""
        fingerprint, nonce, sealed = self._parts(token)
        aead = self._keys.get(fingerprint)
        if aead is None:
            raise ValueError(
                "sealed by a key this box does not hold: another purpose, or a secret "
                "rotated away (keep it in the previous keys until re-sealed)"
            )
        try:
            return aead.decrypt(nonce, sealed, self._purpose).decode()
        except InvalidTag as exc:
            raise ValueError("sealed value is damaged") from exc

    def is_stale(self, token: str) -> bool:
        """Sealed with a previous secret: seal it again after a rotation."""
        return self._parts(token)[0] != self._current

    @staticmethod
    def _parts(token: str) -> tuple[bytes, bytes, bytes]:
        raw = base64.urlsafe_b64decode(token.encode())
        if raw[:1] != FORMAT or len(raw) < 1 + FINGERPRINT_BYTES + NONCE_BYTES + 16:
            raise ValueError("not a sealed value of this format")
        head = 1 + FINGERPRINT_BYTES
        return raw[1:head], raw[head : head + NONCE_BYTES], raw[head + NONCE_BYTES :]


@dataclass
class Resealed:
    """What sealing again after a key rotation did: the values sealed with the current key,
    and those no configured key opens, by where they are (kept as they were)."""

    resealed: int = 0
    unreadable: list[str] = field(default_factory=list)

    def token(self, box: SecretBox, where: str, token: str) -> str:
        """``token`` as sealed with ``box``'s current key: itself when it is, else opened
        and sealed again."""
        try:
            if not box.is_stale(token):
                return token
            plaintext = box.open(token)
        except ValueError as exc:
            self.unreadable.append(f"{where}: {exc}")
            return token
        self.resealed += 1
        return box.seal(plaintext)


def blind_index(secret: bytes, purpose: str, normalised: str) -> str:
    """A keyed, deterministic digest of ``normalised`` for exact-match look-ups.

    The caller normalises (e-mail lower-cased and trimmed, phone in E.164) so that equal
    values give equal indexes; without the key the digest reveals nothing searchable.
    """
    key = derive_key(secret, f"blind-index:{purpose}")
    return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()
