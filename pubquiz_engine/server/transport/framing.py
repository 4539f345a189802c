"""Server-to-client framing (RFC 6455 section 5.2): unmasked, final frames built once."""

from __future__ import annotations

from typing import Final

__all__ = ["PING_FRAME", "frame_binary", "frame_text"]

# An empty unmasked PING frame: the only ping the server sends.
PING_FRAME: Final = b"\x89\x00"


def _frame(opcode_byte: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((opcode_byte, n)) + payload
    if n < 65536:
        return bytes((opcode_byte, 126)) + n.to_bytes(2, "big") + payload
    return bytes((opcode_byte, 127)) + n.to_bytes(8, "big") + payload


def frame_binary(payload: bytes) -> bytes:
    """Frame ``payload`` as one unmasked, final binary WebSocket frame (RFC 6455 5.2).

    Server-to-client frames are never masked, so the same bytes are valid on every
    connection: fan-out frames a broadcast once and hands it to ``WebSocket.send_frame``.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    return _frame(0x82, payload)


def frame_text(text: str) -> bytes:
    """Frame ``text`` (UTF-8 encoded) as one unmasked, final text frame."""
    return _frame(0x81, text.encode("utf-8"))
