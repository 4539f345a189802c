"""The golden frames in protocol/vectors/vectors.json hold both ways, and are up to date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from generate_vectors import VECTORS_PATH, frame_bytes, render

from pubquiz_engine.errors import ErrorCode
from pubquiz_engine.protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    DecodeError,
    Direction,
    decode,
    encode,
    from_wire,
)

VECTORS: dict[str, Any] = json.loads(Path(VECTORS_PATH).read_text(encoding="utf-8"))


def _strict(value: Any) -> str:
    # json.dumps tells 1 from 1.0 from true, and keeps key order: "exactly that message".
    return json.dumps(value, ensure_ascii=False)


def _wire_json(message: Any) -> str:
    return _strict(json.loads(json.dumps(message.to_wire())))


def _frame(entry: dict[str, Any]) -> bytes:
    if "hex" in entry:
        return bytes.fromhex(entry["hex"])
    return frame_bytes([(part, times) for part, times in entry["hex_chunks"]])


@pytest.mark.parametrize("entry", VECTORS["valid"], ids=lambda e: e["name"])
def test_valid_vector_both_ways(entry: dict[str, Any]) -> None:
    direction = Direction(entry["direction"])
    data = bytes.fromhex(entry["hex"])
    decoded = decode(data, direction=direction)
    assert _wire_json(decoded) == _strict(entry["message"])
    built = from_wire(entry["message"], direction=direction)
    assert built == decoded
    assert encode(built) == data


@pytest.mark.parametrize("entry", VECTORS["decode_only"], ids=lambda e: e["name"])
def test_decode_only_vector(entry: dict[str, Any]) -> None:
    direction = Direction(entry["direction"])
    decoded = decode(bytes.fromhex(entry["hex"]), direction=direction)
    assert _wire_json(decoded) == _strict(entry["message"])
    assert encode(decoded).hex() == entry["canonical_hex"]


@pytest.mark.parametrize("entry", VECTORS["invalid"], ids=lambda e: e["name"])
def test_invalid_vector(entry: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(_frame(entry), direction=Direction(entry["direction"]))
    assert caught.value.code == ErrorCode(entry["error"])
    assert caught.value.rid == entry["rid"]


def test_every_message_type_has_a_valid_vector() -> None:
    seen = {(e["direction"], e["message"]["t"]) for e in VECTORS["valid"]}
    expected = {(str(Direction.CLIENT_TO_SERVER), t) for t in CLIENT_MESSAGES} | {
        (str(Direction.SERVER_TO_CLIENT), t) for t in SERVER_MESSAGES
    }
    assert expected - seen == set()


def test_every_codec_error_code_has_an_invalid_vector() -> None:
    codec_codes = {
        ErrorCode.FRAME_TOO_LARGE,
        ErrorCode.MALFORMED_FRAME,
        ErrorCode.LIMIT_EXCEEDED,
        ErrorCode.UNSUPPORTED_TYPE,
        ErrorCode.INVALID_MESSAGE,
        ErrorCode.UNKNOWN_MESSAGE,
    }
    assert codec_codes <= {ErrorCode(e["error"]) for e in VECTORS["invalid"]}


def test_vectors_file_is_what_the_generator_writes() -> None:
    # A codec change that alters a frame must come with a deliberate regeneration
    # (python tests/protocol/generate_vectors.py), never silently.
    assert Path(VECTORS_PATH).read_text(encoding="utf-8") == render()
