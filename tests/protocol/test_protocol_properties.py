"""Property tests: every message round-trips; no input makes decode raise anything but a
ProtocolError (hypothesis fuzzing plus a deterministic 100,000-frame run)."""

from __future__ import annotations

import random

import msgpack
import pytest
import strategies
from generate_vectors import VALID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pubquiz_engine.errors import ProtocolError
from pubquiz_engine.protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    DecodeError,
    Direction,
    Message,
    codec,
    decode,
    encode,
    encode_many,
)
from pubquiz_engine.protocol.limits import CLIENT_LIMITS, SERVER_LIMITS, Limits

ALL_CLASSES = [
    *((Direction.CLIENT_TO_SERVER, cls) for cls in CLIENT_MESSAGES.values()),
    *((Direction.SERVER_TO_CLIENT, cls) for cls in SERVER_MESSAGES.values()),
]


def _check_roundtrip(message: Message, direction: Direction) -> None:
    data = encode(message)
    decoded = decode(data, direction=direction)
    assert decoded == message
    assert type(decoded) is type(message)
    # Byte-stable as well: catches a value that compares equal but changed type (1 vs 1.0 vs
    # True), which == alone would miss.
    assert encode(decoded) == data


@pytest.mark.parametrize(
    ("direction", "cls"), ALL_CLASSES, ids=[f"{d.value[:6]}-{c.TYPE}" for d, c in ALL_CLASSES]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_every_message_type(
    direction: Direction, cls: type[Message], data: st.DataObject
) -> None:
    _check_roundtrip(data.draw(strategies.message_strategy(cls)), direction)


@settings(max_examples=200, deadline=None)
@given(message=strategies.client_messages())
def test_roundtrip_client_messages(message: Message) -> None:
    _check_roundtrip(message, Direction.CLIENT_TO_SERVER)


@settings(max_examples=200, deadline=None)
@given(message=strategies.server_messages())
def test_roundtrip_server_messages(message: Message) -> None:
    _check_roundtrip(message, Direction.SERVER_TO_CLIENT)


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(strategies.server_messages(), max_size=5))
def test_encode_many_is_encode_per_message(batch: list[Message]) -> None:
    assert encode_many(batch) == [encode(m) for m in batch]


def _decode_or_protocol_error(data: bytes, direction: Direction) -> None:
    try:
        message = decode(data, direction=direction)
    except ProtocolError as exc:
        assert isinstance(exc, DecodeError)
        assert exc.rid is None or 0 <= exc.rid < 2**31
        return
    # Whatever decodes is a valid message that re-encodes and decodes to itself.
    assert decode(encode(message), direction=direction) == message


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), direction=st.sampled_from(Direction))
@example(data=b"\x91" * 10_000 + b"\xc0", direction=Direction.CLIENT_TO_SERVER)
@example(data=b"\xdd\xff\xff\xff\xff", direction=Direction.CLIENT_TO_SERVER)
def test_fuzz_random_bytes(data: bytes, direction: Direction) -> None:
    _decode_or_protocol_error(data, direction)


@st.composite
def _mutated_frames(draw: st.DrawFn) -> tuple[bytes, Direction]:
    direction = draw(st.sampled_from(Direction))
    frame = bytearray(encode(draw(strategies.messages(direction))))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(frame) - 1, 0)))
        if action == "flip" and frame:
            frame[position] = draw(st.integers(0, 255))
        elif action == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=6))
        elif action == "delete" and frame:
            del frame[position]
        else:
            del frame[position:]
    return bytes(frame), direction


@settings(max_examples=400, deadline=None)
@given(case=_mutated_frames())
def test_fuzz_mutated_valid_frames(case: tuple[bytes, Direction]) -> None:
    _decode_or_protocol_error(*case)


def _msgpack_fault(data: bytes, limits: Limits) -> bool:
    """Whether msgpack (with the codec's options) or the codec's own depth and repeated-key
    checks refuse ``data`` as a frame (a map)."""
    try:
        frame = msgpack.unpackb(data, **codec._options(limits))
    except (msgpack.ExtraData, codec._ExtRefused, ValueError, TypeError, OverflowError):
        return True
    return type(frame) is not dict or codec._map_header(data) != len(frame) or any(
        codec._too_deep(v, limits.max_depth - 1) for v in frame.values())


@settings(max_examples=600, deadline=None)
@given(case=_mutated_frames())
@example(case=(bytes.fromhex("83a174a470696e67a372696401c9ffffffff05"), Direction.CLIENT_TO_SERVER))
@example(case=(b"\x81\xa1t" + b"\x91" * 20 + b"\xc0", Direction.CLIENT_TO_SERVER))
def test_the_first_fault_walk_agrees_with_msgpack_on_which_frames_fail(
    case: tuple[bytes, Direction]
) -> None:
    """``_first_fault`` (the byte-order rule of SPEC section 12) finds a fault exactly when
    msgpack or the codec's depth and repeated-key checks do; only the code may differ
    (msgpack stops where it stops; the walk names the first fault in byte order)."""
    data, direction = case
    limits = CLIENT_LIMITS if direction is Direction.CLIENT_TO_SERVER else SERVER_LIMITS
    assert (codec._first_fault(data, limits) is not None) == _msgpack_fault(data, limits)


@settings(max_examples=200, deadline=None)
@given(
    value=strategies.plain_values(3) | st.binary(max_size=4),
    keys=st.lists(st.sampled_from(["t", "rid", "q", "value", "seq", "x"]), max_size=5),
    message_type=st.sampled_from([*CLIENT_MESSAGES, *SERVER_MESSAGES, "nope"]),
)
def test_fuzz_well_formed_maps_with_wrong_contents(
    value: object, keys: list[str], message_type: str
) -> None:
    # Structurally valid msgpack, semantically anything: the codec's field checks must hold.
    frame = {"t": message_type, **dict.fromkeys(keys, value)}
    data = msgpack.packb(frame)
    for direction in Direction:
        _decode_or_protocol_error(data, direction)


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    out = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        position = rng.randrange(len(out)) if out else 0
        if roll < 0.4 and out:
            out[position] = rng.randrange(256)
        elif roll < 0.6:
            out[position:position] = rng.randbytes(rng.randint(1, 5))
        elif roll < 0.8 and out:
            del out[position]
        elif roll < 0.9:
            # An interesting header byte: containers, str/bin/ext markers, reserved 0xc1.
            out[position:position] = bytes(
                [
                    rng.choice(
                        [0x91, 0x81, 0xDC, 0xDD, 0xDE, 0xDF, 0xDB, 0xC6, 0xC9, 0xD4, 0xC1, 0xCB]
                    )
                ]
            )
        else:
            del out[position:]
    return bytes(out)


def test_deterministic_100k_random_and_mutated_frames() -> None:
    rng = random.Random(20240601)
    seeds = [encode(m) for m in _seed_messages()]
    counts = {"decoded": 0, "refused": 0}
    for i in range(100_000):
        # A quarter pure noise, the rest mutated valid frames (which get past msgpack more often
        # and so exercise the field checks).
        noise = i % 4 == 0
        data = rng.randbytes(rng.randint(0, 64)) if noise else _mutate(rng, rng.choice(seeds))
        direction = Direction.CLIENT_TO_SERVER if i % 2 else Direction.SERVER_TO_CLIENT
        limits = CLIENT_LIMITS if i % 2 else SERVER_LIMITS
        assert (codec._first_fault(data, limits) is not None) == _msgpack_fault(data, limits), data
        try:
            decode(data, direction=direction)
        except ProtocolError:
            counts["refused"] += 1
        else:
            counts["decoded"] += 1
    assert counts["decoded"] + counts["refused"] == 100_000
    # Both outcomes occur (the mutations are neither all-fatal nor all-harmless).
    assert counts["decoded"] > 100 and counts["refused"] > 50_000


def _seed_messages() -> list[Message]:
    # Fixed seeds (the curated golden messages) keep this test deterministic.
    return [message for _, _, message in VALID]
