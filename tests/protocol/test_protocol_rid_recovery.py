"""A frame msgpack itself refuses (a limit, bad UTF-8, a truncated value, ...) still gets its rid
back when the top-level map's ``rid`` entry can be read safely, so the server answers
``error{rid, code}`` and the client does not wait on that rid until its own timeout.

The recovery (``codec._recover_envelope``) must stay bounded: it walks only the top-level map,
steps over values by their declared length, and stops at the first entry it cannot read.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import pytest
import strategies
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pubquiz_engine.errors import ErrorCode
from pubquiz_engine.protocol import (
    CLIENT_LIMITS,
    DecodeError,
    Direction,
    ErrorReply,
    Limits,
    decode,
    encode,
)
from pubquiz_engine.protocol.fields import U31_MAX

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


def _p(value: object) -> bytes:
    data: bytes = msgpack.packb(value)
    return data


def _map(entries: list[tuple[str, bytes]]) -> bytes:
    """A top-level map from already-packed values, in this order (fixmap or map16 header)."""
    n = len(entries)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    return head + b"".join(_p(key) + value for key, value in entries)


def _refused(data: bytes, **kwargs: Any) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(data, **kwargs)
    return caught.value


def _peak_bytes(data: bytes) -> int:
    """The traced allocation peak of one refused decode of ``data``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with pytest.raises(DecodeError):
            decode(data)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# msgpack's C Unpacker carries a fixed ~41 KB context (its 1024-level stack); the walk copies
# the frame once. Anything that materialised a declared length (GiB) would be far beyond this.
def _allocation_bound(data: bytes) -> int:
    return 128 * 1024 + 2 * len(data)


# --- the motivating case ------------------------------------------------------------------


def test_join_with_a_10_kb_name_gets_its_rid_back() -> None:
    data = _p({"t": "join", "rid": 41, "code": "K7QX", "name": "x" * 10_000, "team": None})
    error = _refused(data)
    assert (error.code, error.rid, error.message_type) == (ErrorCode.LIMIT_EXCEEDED, 41, "join")
    assert error.code.close_code is None  # the connection stays, as before
    assert _peak_bytes(data) < _allocation_bound(data)


def test_rid_after_the_long_name_is_reached_by_stepping_over_it() -> None:
    data = _p({"code": "K7QX", "name": "é" * 6_000, "team": None, "t": "join", "rid": 42})
    error = _refused(data)
    assert (error.code, error.rid, error.message_type) == (ErrorCode.LIMIT_EXCEEDED, 42, "join")


def test_server_reply_to_the_long_name_carries_the_rid_for_the_client() -> None:
    # What the server does with the error (connection._error), with the codec alone: the reply
    # a client decodes names the request it refused, so the client stops waiting on rid 41.
    sent = _p({"t": "join", "rid": 41, "code": "K7QX", "name": "x" * 10_000, "team": None})
    error = _refused(sent)
    reply = ErrorReply(
        rid=error.rid, code=str(error.code), message=error.message[:1000],
        retryable=error.code.retryable,
    )
    received = decode(encode(reply), direction=S2C)
    assert isinstance(received, ErrorReply)
    assert (received.rid, received.code, received.retryable) == (41, "limit_exceeded", False)


# --- each kind of unreadable field, the rid before and after it ---------------------------

DEEP = b"\x91" * 2_000 + b"\xc0"  # beyond msgpack's own 1024-level stack
BIG_MAP = _p({f"k{i}": i for i in range(1_001)})  # over max_map_len, but all there
BIG_ARRAY = _p(list(range(1_001)))
LONG_STR = _p("x" * 5_000)
HUGE_STR_SHORT = b"\xdb\xff\xff\xff\xff" + b"x"  # declares 4 GiB, holds 1 byte
HUGE_MAP_SHORT = b"\xdf\xff\xff\xff\xff"
HUGE_ARRAY_SHORT = b"\xdd\xff\xff\xff\xff"

# (name, packed bad value, code, whether the walk can step over it to a rid after it)
BAD_FIELDS: list[tuple[str, bytes, ErrorCode, bool]] = [
    ("long_string", LONG_STR, ErrorCode.LIMIT_EXCEEDED, True),
    ("big_map", BIG_MAP, ErrorCode.LIMIT_EXCEEDED, True),
    ("big_array", BIG_ARRAY, ErrorCode.LIMIT_EXCEEDED, True),
    ("bin", b"\xc4\x02hi", ErrorCode.UNSUPPORTED_TYPE, True),
    ("ext", b"\xd4\x05\x01", ErrorCode.UNSUPPORTED_TYPE, True),
    ("invalid_utf8", b"\xa2\xff\xfe", ErrorCode.MALFORMED_FRAME, True),
    # msgpack's skip has the same 1024-level stack: nothing after this is read.
    ("nested_2000_deep", DEEP, ErrorCode.LIMIT_EXCEEDED, False),
    ("reserved_byte", b"\xc1", ErrorCode.MALFORMED_FRAME, False),
    # A declared length the frame does not hold swallows the rest of the frame.
    ("huge_string_short_body", HUGE_STR_SHORT, ErrorCode.MALFORMED_FRAME, False),
    # ... whatever the type: not held is malformed_frame before any limit (SPEC section 12).
    ("huge_map_short_body", HUGE_MAP_SHORT, ErrorCode.MALFORMED_FRAME, False),
    ("huge_array_short_body", HUGE_ARRAY_SHORT, ErrorCode.MALFORMED_FRAME, False),
]


@pytest.mark.parametrize(
    ("bad", "code", "skippable"), [case[1:] for case in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
@pytest.mark.parametrize("rid_first", [True, False], ids=["rid_before", "rid_after"])
def test_rid_around_an_unreadable_field(
    bad: bytes, code: ErrorCode, skippable: bool, rid_first: bool
) -> None:
    rid = [("rid", _p(77))]
    field = [("quiz", bad)]
    entries = [("t", _p("create_session")), *(rid + field if rid_first else field + rid)]
    data = _map(entries)
    error = _refused(data)
    assert error.code is code
    expected = 77 if rid_first or skippable else None
    assert error.rid == expected
    assert error.message_type == "create_session"
    assert _peak_bytes(data) < _allocation_bound(data)


def test_frame_truncated_before_the_rid_gives_none() -> None:
    whole = _p({"t": "answer", "q": 0, "value": "abc", "rid": 9})
    cut = whole[: whole.index(b"\xa3rid")]
    error = _refused(cut)
    assert (error.code, error.rid) == (ErrorCode.MALFORMED_FRAME, None)
    assert error.message_type == "answer"
    # ... and cut inside the rid's own value: still nothing (0xce declares a uint32).
    error = _refused(_map([("t", _p("ping")), ("rid", b"\xce\x00\x01")]))
    assert (error.code, error.rid) == (ErrorCode.MALFORMED_FRAME, None)


def test_t_is_recovered_after_the_bad_field_and_not_when_it_is_too_long() -> None:
    error = _refused(_map([("rid", _p(5)), ("name", LONG_STR), ("t", _p("join"))]))
    assert (error.rid, error.message_type) == (5, "join")
    # A "t" over the string limit is stepped over unread: no type, and the rid stands.
    error = _refused(_map([("rid", _p(5)), ("t", LONG_STR)]))
    assert (error.code, error.rid, error.message_type) == (ErrorCode.LIMIT_EXCEEDED, 5, None)
    # ... and the walk goes on past it, as past a key over the limit (SPEC section 12).
    error = _refused(_map([("t", LONG_STR), ("rid", _p(6))]))
    assert (error.code, error.rid, error.message_type) == (ErrorCode.LIMIT_EXCEEDED, 6, None)
    error = _refused(_map([("k" * 4097, _p(1)), ("rid", _p(7))]))
    assert (error.code, error.rid) == (ErrorCode.LIMIT_EXCEEDED, 7)


def test_invalid_utf8_in_t_loses_t_not_the_rid() -> None:
    """Issue 19.10: the rid after a `t` that is not UTF-8 is read, as after any other value."""
    for entries in ([("t", b"\xa2\xff\xfe"), ("rid", _p(4))],
                    [("rid", _p(4)), ("t", b"\xa2\xff\xfe")],
                    [("t", _p("ping")), ("x", b"\xa2\xff\xfe"), ("rid", _p(4))]):
        error = _refused(_map(entries))
        assert (error.code, error.rid) == (ErrorCode.MALFORMED_FRAME, 4)
    bad_key = b"\x83" + _p("t") + _p("ping") + b"\xa2\xff\xfe" + _p(1) + _p("rid") + _p(4)
    error = _refused(bad_key)
    assert (error.code, error.rid, error.message_type) == (ErrorCode.MALFORMED_FRAME, 4, "ping")


# --- what the recovered rid must be -------------------------------------------------------


@pytest.mark.parametrize(
    "rid_value",
    [_p(-1), _p(U31_MAX + 1), _p(True), _p("7"), _p([7]), _p(1.0), b"\xd4\x05\x01", LONG_STR],
    ids=["negative", "too_big", "bool", "str", "array", "float", "ext", "long_str"],
)
def test_an_invalid_rid_is_never_recovered(rid_value: bytes) -> None:
    error = _refused(_map([("t", _p("ping")), ("rid", rid_value), ("x", LONG_STR)]))
    assert error.rid is None


def test_widest_valid_rid_in_any_integer_width() -> None:
    for packed in (b"\xce\x7f\xff\xff\xff", b"\xcf\x00\x00\x00\x00\x7f\xff\xff\xff",
                   b"\xd3\x00\x00\x00\x00\x7f\xff\xff\xff"):
        error = _refused(_map([("t", _p("ping")), ("rid", packed), ("x", LONG_STR)]))
        assert error.rid == U31_MAX


def test_a_repeated_rid_is_ambiguous_and_gives_none() -> None:
    error = _refused(_map([("rid", _p(1)), ("x", LONG_STR), ("rid", _p(2)), ("t", _p("ping"))]))
    assert (error.rid, error.message_type) == (None, "ping")
    error = _refused(_map([("rid", _p(1)), ("t", _p("a")), ("x", LONG_STR), ("t", _p("b"))]))
    assert (error.rid, error.message_type) == (1, None)


def test_the_walk_stops_at_a_non_string_key() -> None:
    # {"rid": 3, 1: 2, "x": <long>} and {1: 2, "x": <long>, "rid": 3}
    before = b"\x83" + _p("rid") + _p(3) + _p(1) + _p(2) + _p("x") + LONG_STR
    after = b"\x83" + _p(1) + _p(2) + _p("x") + LONG_STR + _p("rid") + _p(3)
    assert _refused(before).rid == 3
    assert _refused(after).rid is None


def test_a_top_level_map_over_the_map_limit_gives_nothing() -> None:
    limits = Limits(max_map_len=3)
    data = _map([("rid", _p(4)), ("t", _p("ping")), ("a", _p(1)), ("b", _p(2))])
    error = _refused(data, limits=limits)
    assert (error.code, error.rid, error.message_type) == (ErrorCode.LIMIT_EXCEEDED, None, None)


def test_framing_errors_keep_no_rid_and_codes_keep_their_close_behaviour() -> None:
    # Trailing bytes: the frame's one value was complete; the framing is wrong. No rid.
    error = _refused(_p({"t": "ping", "rid": 1}) + b"\xc0")
    assert (error.code, error.rid) == (ErrorCode.MALFORMED_FRAME, None)
    # An oversized frame is refused before msgpack runs, and still closes the connection.
    pad = _p("x" * CLIENT_LIMITS.max_frame_bytes)
    data = _map([("t", _p("ping")), ("rid", _p(1)), ("pad", pad)])
    error = _refused(data)
    assert (error.code, error.rid) == (ErrorCode.FRAME_TOO_LARGE, None)
    assert error.code.close_code is not None
    # The codes recovery adds a rid to close nothing.
    for code in (ErrorCode.LIMIT_EXCEEDED, ErrorCode.MALFORMED_FRAME,
                 ErrorCode.UNSUPPORTED_TYPE, ErrorCode.INVALID_MESSAGE):
        assert code.close_code is None


def test_hostile_frames_allocate_little() -> None:
    frames = [
        b"\x81\xa3rid" + b"\xdb\xff\xff\xff\xff",
        _map([("rid", _p(1)), ("x", HUGE_ARRAY_SHORT)]),
        _map([("rid", _p(1)), ("x", HUGE_MAP_SHORT)]),
        _map([("x", b"\x91" * 60_000 + b"\xc0"), ("rid", _p(1))]),
        b"\xdf\xff\xff\xff\xff" + (_p("rid") + _p(1)) * 1_000,
        _map([("x", _p("y" * 60_000)), ("rid", _p(1))]),
        # Many top-level entries, every key at the string limit.
        b"\xde\x03\xe8" + (_p("k" * 4_096) + b"\xc0") * 14 + _p("z" * 5_000),
    ]
    for data in frames:
        assert len(data) <= CLIENT_LIMITS.max_frame_bytes
        assert _peak_bytes(data) < _allocation_bound(data), data[:16].hex()


# --- properties ----------------------------------------------------------------------------


def _top_level_rids(data: bytes) -> list[object]:
    """Every ``"rid"`` value of the frame's top-level map, read leniently (no limits, any key
    type, invalid UTF-8 tolerated) up to the first entry that cannot be read at all."""
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, unicode_errors="surrogateescape",
        max_buffer_size=max(len(data), 1),
    )
    unpacker.feed(data)
    rids: list[object] = []
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "rid":
                rids.append(unpacker.unpack())
            else:
                unpacker.skip()
    except Exception:  # the oracle stops wherever msgpack does
        pass
    return rids


def _check(data: bytes, direction: Direction) -> None:
    try:
        decode(data, direction=direction)
    except DecodeError as exc:
        if exc.rid is not None:
            assert type(exc.rid) is int and 0 <= exc.rid <= U31_MAX
            assert exc.rid in _top_level_rids(data)
        assert exc.message_type is None or type(exc.message_type) is str


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), direction=st.sampled_from(Direction))
@example(data=b"\x82\xa3rid\x05\xa1x\xdb\xff\xff\xff\xff", direction=C2S)
def test_arbitrary_bytes_give_only_decode_errors_with_a_true_rid(
    data: bytes, direction: Direction
) -> None:
    _check(data, direction)


_HEADERS = [0x91, 0x81, 0xC1, 0xC4, 0xD4, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xA2, 0xFF]


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[bytes, Direction]:
    direction = draw(st.sampled_from(Direction))
    frame = bytearray(encode(draw(strategies.messages(direction))))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "header", "insert", "delete", "truncate", "long"]))
        at = draw(st.integers(0, max(len(frame) - 1, 0)))
        if action == "flip" and frame:
            frame[at] = draw(st.integers(0, 255))
        elif action == "header":
            frame[at:at] = bytes([draw(st.sampled_from(_HEADERS))])
        elif action == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif action == "delete" and frame:
            del frame[at]
        elif action == "long":
            frame[at:at] = LONG_STR
        else:
            del frame[at:]
    return bytes(frame), direction


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_mutated())
def test_mutated_valid_frames_give_only_decode_errors_with_a_true_rid(
    case: tuple[bytes, Direction],
) -> None:
    _check(*case)


@settings(max_examples=300, deadline=None)
@given(
    bad=st.sampled_from(BAD_FIELDS),
    rid=st.integers(0, U31_MAX),
    fillers=st.lists(strategies.plain_values(2), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_rid_is_recovered_exactly_when_it_can_be_reached(
    bad: tuple[str, bytes, ErrorCode, bool],
    rid: int,
    fillers: list[object],
    order: Any,
) -> None:
    _, bad_value, code, skippable = bad
    entries = [("t", _p("answer")), ("rid", _p(rid)), ("value", bad_value)]
    entries += [(f"f{i}", _p(v)) for i, v in enumerate(fillers)]
    order.shuffle(entries)
    names = [key for key, _ in entries]
    error = _refused(_map(entries))
    assert error.code is code
    reachable = skippable or names.index("rid") < names.index("value")
    assert error.rid == (rid if reachable else None)
    t_reachable = skippable or names.index("t") < names.index("value")
    assert error.message_type == ("answer" if t_reachable else None)
