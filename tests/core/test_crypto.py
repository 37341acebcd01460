"""Sealed secrets and blind indexes: round trips, purposes kept apart, key rotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revhub.core.crypto import SecretBox, blind_index

OLD, NEW = b"o" * 32, b"n" * 32


@given(st.text(max_size=300))
def test_what_is_sealed_opens_to_the_same_text(text: str) -> None:
    box = SecretBox(NEW, "pii")
    sealed = box.seal(text)
    assert box.open(sealed) == text


def test_each_seal_differs_and_purposes_do_not_open_each_other() -> None:
    box = SecretBox(NEW, "pii")
    assert box.seal("ada@acme.com") != box.seal("ada@acme.com")
    with pytest.raises(ValueError, match="does not hold"):
        SecretBox(NEW, "webhook-secret").open(box.seal("ada@acme.com"))


def test_after_rotation_old_values_open_and_are_flagged_stale() -> None:
    sealed_before = SecretBox(OLD, "pii").seal("ada@acme.com")
    rotated = SecretBox(NEW, "pii", previous=[OLD])
    assert rotated.open(sealed_before) == "ada@acme.com"
    assert rotated.is_stale(sealed_before)
    assert not rotated.is_stale(rotated.seal("ada@acme.com"))
    with pytest.raises(ValueError, match="does not hold"):
        SecretBox(NEW, "pii").open(sealed_before)


def test_a_damaged_value_is_refused() -> None:
    sealed = SecretBox(NEW, "pii").seal("x")
    damaged = sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB")
    with pytest.raises(ValueError, match=r"damaged|format"):
        SecretBox(NEW, "pii").open(damaged)
    with pytest.raises(ValueError, match="format"):
        SecretBox(NEW, "pii").open("bm90IHNlYWxlZA==")


def test_an_email_is_not_readable_in_its_sealed_form() -> None:
    assert "ada@acme.com" not in SecretBox(NEW, "pii").seal("ada@acme.com")


def test_blind_index_is_deterministic_keyed_and_per_purpose() -> None:
    first = blind_index(NEW, "email", "ada@acme.com")
    assert first == blind_index(NEW, "email", "ada@acme.com")
    assert first != blind_index(OLD, "email", "ada@acme.com")
    assert first != blind_index(NEW, "phone", "ada@acme.com")
    assert "ada" not in first and len(first) == 64
