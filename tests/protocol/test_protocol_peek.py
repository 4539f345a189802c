"""``codec.peek``: a frame's type, rid and operator key without decoding it (issue 16, point 7).

The server reads these of a frame it is about to refuse unbuilt (throttled, or over the frame
limit without the operator key). Small frames take a fast path (unpacked whole); it must agree
with the bounded walk that big ones get.
"""

from __future__ import annotations

import tracemalloc

import msgpack
from hypothesis import given
from hypothesis import strategies as st
from strategies import client_messages

from pubquiz_engine.protocol import CLIENT_LIMITS, codec
from pubquiz_engine.protocol import messages as m


def _walked(data: bytes) -> codec.Envelope:
    return codec._envelope(codec._walk_envelope(data, CLIENT_LIMITS))


@st.composite
def small_frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "mutated", "random", "keys"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "keys":  # the envelope's keys with odd values, repeated, beside non-str keys
        keys = st.sampled_from(["t", "rid", "key", "x", b"", 1])
        values = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                           st.text(max_size=8), st.floats(allow_nan=False), st.binary(max_size=0))
        pairs = draw(st.lists(st.tuples(keys, values), max_size=6))
        header = msgpack.packb({}) if not pairs else bytes([0x80 | len(pairs)])
        return header + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in pairs)
    data = bytearray(codec.encode(draw(client_messages())))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@given(small_frames())
def test_the_fast_path_agrees_with_the_walk(data: bytes) -> None:
    assert codec.peek(data) == _walked(data)


@given(client_messages())
def test_peek_reads_what_decode_would(message: m.Message) -> None:
    envelope = codec.peek(codec.encode(message))
    assert envelope.type == message.TYPE
    assert envelope.rid == getattr(message, "rid", None)
    assert envelope.key == getattr(message, "key", None)


def test_repeated_keys_and_non_maps_give_nothing() -> None:
    twice = b"\x83" + b"".join(msgpack.packb(x) for x in ("t", "ping", "rid", 1, "rid", 2))
    assert codec.peek(twice) == codec.Envelope(type="ping", rid=None, key=None)
    assert codec.peek(msgpack.packb([1, 2])) == codec.Envelope(type=None, rid=None, key=None)
    assert codec.peek(b"\xc1") == codec.Envelope(type=None, rid=None, key=None)


def test_a_big_frame_is_peeked_without_being_built() -> None:
    junk = [[{} for _ in range(1000)] for _ in range(1000)]  # ~1M maps, ~64 MiB once built
    data = msgpack.packb({"t": "create_session", "rid": 3, "key": "k" * 20, "quiz": junk,
                          "quiz_path": None, "mode": "solo", "options": None})
    del junk
    tracemalloc.start()
    try:
        envelope = codec.peek(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert envelope == codec.Envelope(type="create_session", rid=3, key="k" * 20)
    assert peak < 2 * len(data)  # the unpacker's copy of the frame, nothing built from it
