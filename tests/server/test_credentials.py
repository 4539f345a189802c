"""Secrets are compared in constant time, whatever their lengths (issue 16, point 7)."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubquiz_engine.server import credentials


def test_secrets_are_compared_by_compare_digest_on_equal_lengths(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``hmac.compare_digest`` returns early on different lengths, which would time the
    expected secret's length: every comparison must hand it two inputs of one length."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key = "the-operator-key-of-this-test"
    for guess in ("", "x", key[:-1], key, key + "x", "y" * 1000):
        assert credentials.same_secret(guess, key) is (guess == key)
    assert len(calls) == 6
    assert all(a == b for a, b in calls), calls


@given(st.text(max_size=300), st.text(max_size=300))
def test_same_secret_is_equality(a: str, b: str) -> None:
    assert credentials.same_secret(a, b) is (a == b)
    assert credentials.same_secret(a, a)
