"""The error table is complete and its codes are stable strings."""

from __future__ import annotations

from pubquiz_engine.errors import _CODE_INFO, CloseCode, ErrorCode, Rejected


def test_every_code_has_an_entry() -> None:
    assert set(_CODE_INFO) == set(ErrorCode)


def test_codes_are_lowercase_snake_strings() -> None:
    for code in ErrorCode:
        assert code.value == code.name.lower()


def test_close_code_ranges() -> None:
    for close in CloseCode:
        assert 1000 <= close < 1016 or 4000 <= close < 4200


def test_rejection_carries_code_and_flags() -> None:
    err = Rejected(ErrorCode.BUSY, "queue full")
    assert err.code is ErrorCode.BUSY
    assert err.retryable
    assert err.close_code is None
    assert str(err) == "busy: queue full"
    assert ErrorCode.FRAME_TOO_LARGE.close_code == CloseCode.MESSAGE_TOO_BIG
