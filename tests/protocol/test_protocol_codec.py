"""Codec and schema behaviour that the vectors do not pin: limits at their edges, the large
create_session frame, errors carrying rid, construction-time validation, canonical encoding."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import attrs
import msgpack
import pytest

from pubquiz_engine.errors import CloseCode, CorruptData, ErrorCode, ProtocolError, RemoteError
from pubquiz_engine.protocol import (
    CLIENT_LIMITS,
    CLIENT_MESSAGES,
    SERVER_LIMITS,
    SERVER_MESSAGES,
    Answer,
    CreateSession,
    DecodeError,
    Direction,
    ErrorReply,
    FieldError,
    Join,
    Leaderboard,
    Limits,
    Ping,
    Question,
    State,
    codec,
    decode,
    encode,
    from_wire,
)
from pubquiz_engine.protocol import messages as m


def _code(data: bytes, **kwargs: object) -> tuple[ErrorCode, int | None]:
    with pytest.raises(DecodeError) as caught:
        decode(data, **kwargs)  # type: ignore[arg-type]
    return caught.value.code, caught.value.rid


# --- framing and limits -------------------------------------------------------------------


def test_frame_size_limit_is_inclusive() -> None:
    limits = Limits(max_frame_bytes=64, max_operator_frame_bytes=64)
    base = encode(Ping(rid=1))
    pad_at_limit = msgpack.packb({"t": "ping", "rid": 1})
    assert len(pad_at_limit) < 64
    assert decode(base, limits=limits) == Ping(rid=1)
    over = msgpack.packb({"t": "ping", "rid": 1, "x": "y" * 60})
    assert len(over) > 64
    assert _code(over, limits=limits) == (ErrorCode.FRAME_TOO_LARGE, None)
    assert ErrorCode.FRAME_TOO_LARGE.close_code is CloseCode.MESSAGE_TOO_BIG


def _big_create_session(size_hint: int) -> CreateSession:
    questions = [
        {"kind": "text", "prompt": f"Question {i}: " + "x" * 900, "answers": ["a"], "points": 1}
        for i in range(size_hint // 950)
    ]
    return CreateSession(
        rid=77,
        key="op",
        quiz_path=None,
        quiz={"title": "Big", "rounds": [{"questions": questions}]},
        mode="solo",
        options=None,
    )


def test_create_session_may_use_the_operator_frame_limit() -> None:
    message = _big_create_session(300_000)
    data = encode(message)
    assert CLIENT_LIMITS.max_frame_bytes < len(data) < CLIENT_LIMITS.max_operator_frame_bytes
    assert decode(data) == message


def test_create_session_over_the_operator_limit_is_too_large() -> None:
    data = encode(_big_create_session(300_000))
    limits = Limits(max_frame_bytes=64 * 1024, max_operator_frame_bytes=128 * 1024)
    assert _code(data, limits=limits) == (ErrorCode.FRAME_TOO_LARGE, None)


def test_other_big_frames_are_refused_by_peeking_not_decoding() -> None:
    # "t" placed last, behind a large body: the peek skims the body and still refuses.
    body = {"pad": ["x" * 4000] * 20, "rid": 1, "t": "ping"}
    assert _code(msgpack.packb(body)) == (ErrorCode.FRAME_TOO_LARGE, None)
    # A big frame that only claims to be create_session in a nested value is refused too.
    sneaky = {"pad": {"t": "create_session"}, "x": ["y" * 4000] * 20, "t": "answer"}
    assert _code(msgpack.packb(sneaky)) == (ErrorCode.FRAME_TOO_LARGE, None)
    # Big and garbage.
    assert _code(b"\xc1" * 70_000) == (ErrorCode.FRAME_TOO_LARGE, None)


def test_server_direction_has_larger_limits() -> None:
    participants = [{"participant": i, "name": f"p{i}", "score": i} for i in range(5000)]
    state = State(seq=3, state={"phase": "lobby", "participants": participants})
    data = encode(state)
    assert len(data) > CLIENT_LIMITS.max_frame_bytes
    assert decode(data, direction=Direction.SERVER_TO_CLIENT) == state
    # The same frame is refused with the client limits (5000 > max_array_len as well).
    code, _ = _code(data, direction=Direction.SERVER_TO_CLIENT, limits=CLIENT_LIMITS)
    assert code is ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("depth", [14, 15])
def test_depth_limit_edge(depth: int) -> None:
    # The frame map is depth 1 and quiz's own map is depth 2; "depth" more arrays below.
    nested: object = 1
    for _ in range(depth):
        nested = [nested]
    frame = {"t": "create_session", "rid": 5, "key": "k", "mode": "solo", "quiz": {"a": nested}}
    data = msgpack.packb(frame)
    total = 2 + depth
    if total <= CLIENT_LIMITS.max_depth:
        assert isinstance(decode(data), CreateSession)
    else:
        assert _code(data) == (ErrorCode.LIMIT_EXCEEDED, 5)


def test_string_byte_limit_edge() -> None:
    # msgpack's max_str_len counts UTF-8 bytes, inclusive.
    ok = msgpack.packb({"t": "answer", "rid": 1, "q": 0, "value": "é" * 512})  # 1024 bytes
    assert decode(ok) == Answer(rid=1, q=0, value="é" * 512)
    limits = Limits(max_str_bytes=1023)
    assert _code(ok, limits=limits) == (ErrorCode.LIMIT_EXCEEDED, 1)  # the rid came first


def test_array_and_map_length_limits() -> None:
    limits = Limits(max_array_len=3, max_map_len=6)
    assert decode(encode(Answer(rid=1, q=0, value=[0, 1, 2])), limits=limits)
    data = encode(Answer(rid=1, q=0, value=[0, 1, 2, 3]))
    assert _code(data, limits=limits) == (ErrorCode.LIMIT_EXCEEDED, 1)
    big_map = msgpack.packb({"t": "ping", "rid": 1, **{f"k{i}": i for i in range(5)}})
    assert _code(big_map, limits=limits) == (ErrorCode.LIMIT_EXCEEDED, None)


def test_huge_declared_lengths_allocate_nothing() -> None:
    # In a fresh interpreter so that the peak RSS measures this and nothing else.
    script = textwrap.dedent(
        """
        import resource
        from pubquiz_engine.protocol import decode, DecodeError
        frames = [b"\\xdd\\xff\\xff\\xff\\xff", b"\\xdf\\xff\\xff\\xff\\xff",
                  b"\\xdb\\xff\\xff\\xff\\xffab", b"\\xc6\\xff\\xff\\xff\\xffab",
                  b"\\xc9\\xff\\xff\\xff\\xff\\x05ab", b"\\x91" * 60000 + b"\\xc0"]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for frame in frames:
            for _ in range(100):
                try:
                    decode(frame)
                except DecodeError:
                    pass
                else:
                    raise SystemExit("decoded!")
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    grown_kib = int(out.stdout.strip())
    assert grown_kib < 8 * 1024, f"peak RSS grew by {grown_kib} KiB"


# --- errors carry rid and classify well ---------------------------------------------------


def test_decode_error_is_a_protocol_error_with_rid() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(msgpack.packb({"t": "teleport", "rid": 99}))
    exc = caught.value
    assert isinstance(exc, ProtocolError) and isinstance(exc, RemoteError)
    assert exc.code is ErrorCode.UNKNOWN_MESSAGE
    assert (exc.rid, exc.message_type) == (99, "teleport")
    assert exc.close_code is None and not exc.retryable  # the connection stays open


def test_unknown_type_without_valid_rid() -> None:
    assert _code(msgpack.packb({"t": "teleport"})) == (ErrorCode.UNKNOWN_MESSAGE, None)
    assert _code(msgpack.packb({"t": "teleport", "rid": -1})) == (ErrorCode.UNKNOWN_MESSAGE, None)
    assert _code(msgpack.packb({"t": "teleport", "rid": "1"})) == (ErrorCode.UNKNOWN_MESSAGE, None)


def test_reveal_means_different_things_per_direction() -> None:
    command = decode(msgpack.packb({"t": "reveal", "rid": 4}))
    assert type(command) is CLIENT_MESSAGES["reveal"]
    event = msgpack.packb({"t": "reveal", "seq": 4, "q": 1, "correct": True, "distribution": None})
    assert type(decode(event, direction=Direction.SERVER_TO_CLIENT)) is SERVER_MESSAGES["reveal"]
    assert _code(event) == (ErrorCode.INVALID_MESSAGE, None)  # client "reveal" has no seq/q


def test_bytes_keys_are_refused() -> None:
    # A bin key is a bin value like any other: unsupported, the empty one included.
    data = b"\x83\xa1t\xa4ping\xa3rid\x01\xc4\x01x\x01"
    assert _code(data) == (ErrorCode.UNSUPPORTED_TYPE, 1)
    data = b"\x83\xa1t\xa4ping\xa3rid\x01\xc4\x00\x01"
    assert _code(data) == (ErrorCode.UNSUPPORTED_TYPE, 1)


def test_free_form_map_keys_must_be_strings_and_values_plain() -> None:
    frame = {"t": "state", "seq": 1, "state": {"a": {"b": b"x"}}}
    code, _ = _code(msgpack.packb(frame), direction=Direction.SERVER_TO_CLIENT)
    assert code is ErrorCode.UNSUPPORTED_TYPE
    frame = {"t": "state", "seq": 1, "state": {"a": [1, float("inf")]}}
    code, _ = _code(msgpack.packb(frame), direction=Direction.SERVER_TO_CLIENT)
    assert code is ErrorCode.INVALID_MESSAGE


def test_integers_outside_the_safe_range() -> None:
    frame = {"t": "you", "rank": 1, "score": 2**53, "round_score": None}
    code, _ = _code(msgpack.packb(frame), direction=Direction.SERVER_TO_CLIENT)
    assert code is ErrorCode.INVALID_MESSAGE
    data = b"\x84\xa1t\xa6answer\xa3rid\x01\xa1q\x00\xa5value\xcf" + b"\xff" * 8  # uint64 max
    assert _code(data) == (ErrorCode.INVALID_MESSAGE, 1)


# --- construction ---------------------------------------------------------------------------


def test_construction_validates_and_raises_field_error() -> None:
    with pytest.raises(FieldError) as caught:
        Join(rid=1, code="K7QX", name="x" * 65, team=None)
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED
    assert not isinstance(caught.value, RemoteError)  # a local bug, not the peer's fault
    with pytest.raises(FieldError):
        Answer(rid=-1, q=0, value=1)
    with pytest.raises(FieldError):
        Answer(rid=1, q=0, value=float("nan"))
    with pytest.raises(FieldError):
        Answer(rid=1, q=0, value={"a": 1})
    with pytest.raises(FieldError):
        Join(rid=1, code="K7QX", name="\ud800", team=None)  # unencodable lone surrogate
    with pytest.raises(FieldError):
        Leaderboard(seq=1, round=None, teams=False, top=((0, 1, "a", 3),))  # rank starts at 1
    with pytest.raises(FieldError):
        CreateSession(rid=1, key="k", quiz_path=None, quiz=None, mode="solo", options=None)
    with pytest.raises(TypeError):
        Ping(**{})  # rid is required


def test_messages_are_frozen_and_normalised() -> None:
    message = Answer(rid=1, q=0, value=[2, 1])
    assert message.value == (2, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.q = 3  # type: ignore[misc]
    error = ErrorReply(rid=None, code=ErrorCode.BUSY, message="later", retryable=True)
    assert type(error.code) is str and error.code == "busy"
    # Free-form maps are copied: the caller's later mutation does not leak into the message.
    source = {"phase": "lobby", "list": (1, 2)}
    state = State(seq=1, state=source)
    source["phase"] = "finished"
    assert state.state == {"phase": "lobby", "list": [1, 2]}


def test_encoding_is_canonical() -> None:
    message = Question(
        seq=1,
        q=0,
        round=0,
        number=1,
        kind="single",
        prompt="?",
        choices=("a", "b"),
        media=None,
        points=1,
        time_limit_ms=1000,
        deadline_ms=2000,
    )
    frame = msgpack.unpackb(encode(message))
    assert list(frame) == ["t", *Question.FIELDS]  # "t" first, nil fields written out
    assert frame["media"] is None


def test_from_wire_checks_like_decode() -> None:
    assert from_wire({"t": "ping", "rid": 3}) == Ping(rid=3)
    with pytest.raises(DecodeError) as caught:
        from_wire({"t": "ping", "rid": 3, "x": 1})
    assert (caught.value.code, caught.value.rid) == (ErrorCode.INVALID_MESSAGE, 3)
    with pytest.raises(DecodeError) as caught:
        from_wire({"t": "ping"}, direction=Direction.SERVER_TO_CLIENT)
    assert caught.value.code is ErrorCode.UNKNOWN_MESSAGE


def test_registry_metadata() -> None:
    for cls in CLIENT_MESSAGES.values():
        assert cls.DIRECTION is Direction.CLIENT_TO_SERVER
        assert "rid" in cls.REQUIRED and not cls.BROADCAST
    broadcast = {t for t, cls in SERVER_MESSAGES.items() if cls.BROADCAST}
    personal = set(SERVER_MESSAGES) - broadcast
    assert personal == {
        "welcome",
        "session_created",
        "ok",
        "pong",
        "answer_ack",
        "error",
        "redirect",
        "generated",
        "you",
        "result",
    }
    assert m.registry(Direction.SERVER_TO_CLIENT) is SERVER_MESSAGES


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(max_frame_bytes=0)
    with pytest.raises(ValueError):
        Limits(max_frame_bytes=100, max_operator_frame_bytes=50)
    assert SERVER_LIMITS.max_frame_bytes >= CLIENT_LIMITS.max_operator_frame_bytes


# ---------------------------------------------------------------------------------------------
# Stored data (snapshots): the codec is the only module that imports msgpack.


def test_stored_data_round_trips() -> None:
    value = {"format": 1, "game": {"quiz": {"title": "Q"}, "answers": [[0, 1, 2, "x", 1.5]]},
             "blob": b"\x00\x01", "none": None, "flag": True}
    assert codec.unpack_stored(codec.pack_stored(value)) == value


@pytest.mark.parametrize("raw", [
    b"",  # nothing
    b"\xc1",  # a reserved byte
    msgpack.packb({"a": [1, 2, 3]})[:-1],  # truncated
    msgpack.packb({"a": 1}) + b"\x00",  # trailing bytes
    msgpack.packb({1: "int key"}),  # non-str map key
    msgpack.packb(msgpack.ExtType(5, b"x")),  # an ext value
    b"\xdd\xff\xff\xff\xff",  # an array declaring 4 billion entries
])
def test_unreadable_stored_data_is_corrupt_data(raw: bytes) -> None:
    with pytest.raises(CorruptData):
        codec.unpack_stored(raw)


def test_stored_data_over_its_limits_is_corrupt_data() -> None:
    limits = codec.StoredLimits(max_bytes=100, max_str_bytes=10, max_array_len=3)
    with pytest.raises(CorruptData, match="over 100"):
        codec.unpack_stored(b"\x90" * 101, limits)
    with pytest.raises(CorruptData):
        codec.unpack_stored(codec.pack_stored("x" * 11), limits)
    with pytest.raises(CorruptData):
        codec.unpack_stored(codec.pack_stored([1, 2, 3, 4]), limits)
    assert codec.unpack_stored(codec.pack_stored([1, 2, 3]), limits) == [1, 2, 3]
