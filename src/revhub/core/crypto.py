"""Secrets at rest: AES-256-GCM boxes keyed from the configured secrets (DESIGN.md §6).

Each purpose (PII, webhook secrets, CRM credentials) gets its own key, derived from the
configured secret with HKDF and the purpose as context, so one leaked derived key opens one
kind of data only. A box's output starts with a version byte so keys can be rotated.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"


def derive_key(secret: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret)


class SecretBox:
    """Encrypt and decrypt short strings; ``purpose`` is bound in as associated data."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive_key(secret, purpose))
        self._purpose = purpose.encode()

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._purpose)
        return base64.urlsafe_b64encode(VERSION + nonce + sealed).decode()

    def open(self, token: str) -> str:
        raw = base64.urlsafe_b64decode(token.encode())
        if raw[:1] != VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(raw[1:13], raw[13:], self._purpose).decode()
