"""Encode pubquiz.v1 messages to msgpack frames and decode frames back, with hard limits.

Rules this module keeps:

1. ``encode`` trusts its input: a ``Message`` was validated when it was built, so encoding is one
   generated dict display (``Message.to_wire``) and one ``msgpack.packb`` call. It is on the hot
   path (a broadcast is encoded once per event, then handed to every member). ``Encoder`` does
   the same with one reused ``msgpack.Packer`` (measured: about half the time of ``packb``, which
   builds a packer per call); an encoder is not shared between threads (the engine's are used
   on the trio thread only), ``encode`` is safe anywhere.
2. ``decode`` trusts nothing. Every way a frame can be wrong raises ``DecodeError`` (a
   ``ProtocolError``) with a stable ``ErrorCode``; nothing else escapes, whatever the bytes. The
   limits are enforced *before* the cost: the frame size before msgpack runs, declared string /
   array / map lengths by msgpack before it allocates (``max_str_len`` & co.), nesting beyond
   1024 by msgpack's own fixed stack (``StackError``, no recursion), and ``Limits.max_depth`` by a
   walk of the (already size-bounded) result.
3. pubquiz.v1 has no binary and no extension values, so ``max_bin_len`` and ``max_ext_len`` are
   0 and an empty ext is refused by ``ext_hook``: all of those are ``unsupported_type``.
4. **One first-fault rule** (SPEC section 12): a frame with several decoding faults gets the
   code of the first in byte order (``_first_fault``, run only on frames already refused), and
   decoding faults (msgpack's, the depth limit, a repeated top-level key) come before anything
   is checked about the message (``t``, fields, values).
5. Once the frame is a map, a valid integer ``rid`` is carried on every error
   (``DecodeError.rid``) so the server can answer ``error{rid}`` and keep the connection. When
   msgpack itself refuses the frame (a limit, bad UTF-8, a truncated value, ...), the rid is
   recovered by a bounded walk of the top-level map's entries (``_recover_envelope``) that builds
   nothing but the keys and the ``rid``/``"t"`` values.
6. ``peek`` is that same walk offered before decoding: the server reads a frame's type, ``rid``
   and operator ``key`` with it when it will refuse the frame without building it (throttled,
   or bigger than ``max_frame_bytes`` and not shown the operator key).
7. msgpack's exceptions are translated here and nowhere else (one module per library).
8. Stored data (snapshot records and the session state inside them) is msgpack too, and goes
   through ``pack_stored`` / ``unpack_stored`` here: the same library, other limits
   (``StoredLimits``: what a large session's state needs, not what a client may send), and one
   typed error, ``errors.CorruptData``, for bytes that are not what we wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NoReturn

import attrs
import msgpack

from pubquiz_engine.errors import CorruptData, ErrorCode, ProtocolError
from pubquiz_engine.protocol.fields import U31_MAX, FieldError
from pubquiz_engine.protocol.limits import CLIENT_LIMITS, SERVER_LIMITS, Limits
from pubquiz_engine.protocol.messages import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    CreateSession,
    Direction,
    ErrorReply,
    Message,
    PlayerJoined,
    State,
    Welcome,
)

__all__ = [
    "STORED_LIMITS",
    "DecodeError",
    "Encoder",
    "Envelope",
    "StoredLimits",
    "decode",
    "encode",
    "encode_many",
    "from_wire",
    "pack_stored",
    "peek",
    "unpack_stored",
]


class DecodeError(ProtocolError):
    """A frame that breaks pubquiz.v1.

    ``rid`` is the frame's request id when the frame was a map carrying a valid one (then the
    server answers ``error{rid, code}`` and keeps the connection, unless ``close_code`` says
    otherwise); ``message_type`` is its ``"t"`` when that was a string.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        rid: int | None = None,
        message_type: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.rid = rid
        self.message_type = message_type


# ---------------------------------------------------------------------------------------------
# Encoding.

_packb = msgpack.packb


def encode(message: Message) -> bytes:
    """The frame for ``message``: a msgpack map, ``"t"`` first, then every field in order."""
    data: bytes = _packb(message.to_wire())
    return data


class Encoder:
    """``encode`` with one reused ``msgpack.Packer`` (rule 1): for one thread's hot path."""

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack = msgpack.Packer().pack  # autoreset: each call returns its own bytes

    def encode(self, message: Message) -> bytes:
        """The same bytes as ``encode(message)``."""
        data: bytes = self._pack(message.to_wire())
        return data

    def encode_error(self, rid: int | None, code: str, message: str, retryable: bool,
                     retry_after_ms: int | None) -> bytes:
        """The same bytes as ``encode(ErrorReply(rid=..., code=..., ...))`` (the same dict,
        in ``ErrorReply.to_wire``'s order), without building the message: the refusal path,
        where the message's validators cost ~4 us a refusal. The caller passes what
        ``ErrorReply`` accepts (an ``ErrorCode``'s value, a message of at most
        ``MAX_MESSAGE_CHARS``); a test checks the bytes against ``encode``.
        """
        data: bytes = self._pack({"t": ErrorReply.TYPE, "rid": rid, "code": code,
                                  "message": message, "retryable": retryable,
                                  "retry_after_ms": retry_after_ms})
        return data

    def encode_welcome(self, rid: int, role: str, code: str, epoch: int, seq: int,
                       participant: int | None, name: str | None, team: str | None,
                       token: str | None, replay: str) -> bytes:
        """The same bytes as ``encode(Welcome(rid=..., role=..., ...))`` without building the
        message (its validators cost ~4 us, once per join). The caller passes what ``Welcome``
        accepts: the session's own values; a test checks the bytes against ``encode``."""
        data: bytes = self._pack({"t": Welcome.TYPE, "rid": rid, "role": role, "code": code,
                                  "epoch": epoch, "seq": seq, "participant": participant,
                                  "name": name, "team": team, "token": token,
                                  "replay": replay})
        return data

    def encode_player_joined(self, seq: int, participant: int, name: str,
                             team: str | None) -> bytes:
        """The same bytes as ``encode(PlayerJoined(seq=..., ...))`` without building the
        message (its four validated fields cost more than the encoding; one per join). The
        caller passes what ``PlayerJoined`` accepts: the game's own cleaned name and team; a
        test checks the bytes against ``encode``."""
        data: bytes = self._pack({"t": PlayerJoined.TYPE, "seq": seq, "participant": participant,
                                  "name": name, "team": team})
        return data

    def encode_state(self, seq: int, state: dict[str, Any]) -> bytes:
        """The same bytes as ``encode(State(seq=seq, state=state))`` without building the
        message: ``State``'s validator walks and copies the whole map (~19 us for a lobby's,
        more than ``views.state`` takes to build it). ``state`` is the engine's own
        (``server.views.state``), plain data by construction; tests check the bytes against
        ``encode`` for generated maps and for the views of a game in every phase."""
        data: bytes = self._pack({"t": State.TYPE, "seq": seq, "state": state})
        return data


def encode_many(messages: Iterable[Message]) -> list[bytes]:
    """``[encode(m) for m in messages]``: one frame per message (frames are never batched)."""
    return [_packb(m.to_wire()) for m in messages]


# ---------------------------------------------------------------------------------------------
# Stored data: snapshot records and session states (rule 8).


@attrs.frozen
class StoredLimits:
    """Bounds on stored msgpack data (a snapshot written by an engine, read back by another).

    The writer is us, so these are not a defence against a hostile peer but against damage
    (a truncated or overwritten value, a key holding something else): a corrupt length must
    fail cleanly instead of allocating gigabytes. They are generous because a session's state
    grows with its players and answers (one array row per accepted answer).
    """

    #: Largest stored value, in bytes.
    max_bytes: int = 256 * 1024 * 1024
    #: Longest string (a question's text, a free-text answer, a quiz title).
    max_str_bytes: int = 1024 * 1024
    #: Longest binary value (a snapshot record carries the session state as one bin).
    max_bin_bytes: int = 256 * 1024 * 1024
    #: Most entries in one array (answers: one row per scorer and question).
    max_array_len: int = 16 * 1024 * 1024
    #: Most entries in one map.
    max_map_len: int = 1024 * 1024


STORED_LIMITS = StoredLimits()


def pack_stored(value: Any) -> bytes:
    """``value`` (plain data: dict, list, str, int, float, bool, None, bytes) as msgpack."""
    try:
        data: bytes = _packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        # Our own state failed to pack: a bug (a value that is not plain data), not damage.
        raise TypeError(f"not storable as msgpack: {exc}") from exc
    return data


def _no_stored_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"ext type {code} in stored data")


def unpack_stored(raw: bytes, limits: StoredLimits = STORED_LIMITS) -> Any:
    """The value ``pack_stored`` wrote; ``CorruptData`` for anything else (never another
    exception, whatever the bytes): over a limit, not msgpack, trailing bytes, an ext value,
    a non-string map key."""
    if len(raw) > limits.max_bytes:
        raise CorruptData(f"stored value of {len(raw)} bytes is over {limits.max_bytes}")
    try:
        return msgpack.unpackb(
            raw, raw=False, strict_map_key=True, ext_hook=_no_stored_ext,
            max_str_len=limits.max_str_bytes, max_bin_len=limits.max_bin_bytes,
            max_array_len=limits.max_array_len, max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated classes for bad input
        raise CorruptData(f"stored value is not readable msgpack: {exc!r}") from exc


# ---------------------------------------------------------------------------------------------
# Decoding.


class _ExtRefused(Exception):
    """Raised by our ext_hook so that an ext value stops the decoder at once."""


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise _ExtRefused(code)


# msgpack reports a declared length over a limit as ValueError("N exceeds max_X_len(M)").
_LIMIT_MESSAGE = re.compile(r"exceeds max_(str|bin|array|map|ext)_len")


def _unpack_options(limits: Limits) -> dict[str, Any]:
    return {
        "raw": False,  # str is UTF-8 text; invalid UTF-8 fails (UnicodeDecodeError)
        "use_list": True,
        "strict_map_key": True,  # only str (or bin, refused below) keys: never unhashable ones
        "max_str_len": limits.max_str_bytes,
        "max_bin_len": 0,
        "max_ext_len": 0,
        "max_array_len": limits.max_array_len,
        "max_map_len": limits.max_map_len,
        "ext_hook": _refuse_ext,
    }


# Option sets are built once per Limits; the defaults are looked up by identity (hashing a
# frozen attrs instance on every decode costs more than the lookup saves).
_CLIENT_OPTIONS = _unpack_options(CLIENT_LIMITS)
_SERVER_OPTIONS = _unpack_options(SERVER_LIMITS)
_OPTIONS_CACHE: dict[Limits, dict[str, Any]] = {}


def _options(limits: Limits) -> dict[str, Any]:
    if limits is CLIENT_LIMITS:
        return _CLIENT_OPTIONS
    if limits is SERVER_LIMITS:
        return _SERVER_OPTIONS
    options = _OPTIONS_CACHE.get(limits)
    if options is None:
        options = _OPTIONS_CACHE[limits] = _unpack_options(limits)
    return options


def _unpack(data: bytes, limits: Limits) -> Any:
    """msgpack.unpackb with every msgpack failure mapped to a DecodeError.

    msgpack stops at *a* fault; the code reported is the frame's *first* fault in byte order
    (``_first_fault``), so that every decoder agrees on it (SPEC section 12). The frame's rid
    (and ``"t"``) come back when a bounded walk of its top-level map can read them
    (``_recover_envelope``), except for trailing bytes: then the frame's one value was complete
    and the framing itself is wrong.
    """
    try:
        return msgpack.unpackb(data, **_options(limits))
    except msgpack.ExtraData:
        fault = _first_fault(data, limits)
        if fault is None or fault[0] is ErrorCode.MALFORMED_FRAME:
            raise DecodeError(ErrorCode.MALFORMED_FRAME, "bytes after the frame's value") from None
        code, message = fault  # an earlier fault msgpack does not check (depth, duplicates)
    except (_ExtRefused, ValueError, TypeError, OverflowError) as exc:
        # (StackError, FormatError, UnicodeDecodeError and truncation are ValueErrors too.)
        code, message = _first_fault(data, limits) or _unpack_failure(exc)
    _refuse(data, limits, code, message)


def _refuse(data: bytes, limits: Limits, code: ErrorCode, message: str) -> NoReturn:
    """Raise a decoding fault with the rid and type the envelope walk can read."""
    rid, message_type = _recover_envelope(data, limits)
    raise DecodeError(code, message, rid=rid, message_type=message_type)


def _unpack_failure(exc: Exception) -> tuple[ErrorCode, str]:
    """The error code and message for an exception msgpack.unpackb raised."""
    if isinstance(exc, _ExtRefused):
        return ErrorCode.UNSUPPORTED_TYPE, "ext values are not allowed"
    if isinstance(exc, msgpack.StackError):
        return ErrorCode.LIMIT_EXCEEDED, "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return ErrorCode.MALFORMED_FRAME, "a string is not valid UTF-8"
    if isinstance(exc, ValueError):
        text = str(exc)
        match = _LIMIT_MESSAGE.search(text)
        if match is not None:
            if match.group(1) in ("bin", "ext"):
                return ErrorCode.UNSUPPORTED_TYPE, f"{match.group(1)} values are not allowed"
            return ErrorCode.LIMIT_EXCEEDED, f"a msgpack {match.group(1)} is over its length limit"
        if "map key" in text:
            return ErrorCode.INVALID_MESSAGE, "map keys must be strings"
    # Truncated input, a reserved byte (FormatError), a bad timestamp, and (defensively: msgpack
    # documents neither) TypeError or OverflowError.
    return ErrorCode.MALFORMED_FRAME, "not a valid msgpack value"


# First bytes of a msgpack int (positive fixint, uint8..uint64, int8..int64, negative fixint)
# and of a msgpack str (fixstr, str8, str16, str32).
_INT_HEADS = frozenset([*range(0x00, 0x80), *range(0xCC, 0xD4), *range(0xE0, 0x100)])
_STR_HEADS = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB])
_AMBIGUOUS = object()  # a key that appeared twice: its value is nobody's


# msgpack first bytes -> how many bytes follow them, for the values of a fixed size.
_FIXED_SIZE = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8,
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
}
# fixext 1..16: a type byte and that many data bytes (all refused: pubquiz.v1 has no ext).
_FIXEXT_SIZE = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
# first bytes whose length (of that many bytes, big-endian) follows them, and their kind.
_SIZED = {
    0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"),
    0xC7: (1, "ext"), 0xC8: (2, "ext"), 0xC9: (4, "ext"),
    0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"),
    0xDC: (2, "array"), 0xDD: (4, "array"), 0xDE: (2, "map"), 0xDF: (4, "map"),
}


def _header(data: bytes, pos: int) -> tuple[str, int, int] | None:
    """``(kind, length, header size)`` of the value starting at ``pos`` (kind ``"fixed"``:
    ``length`` bytes of payload), or None when the header itself is cut short."""
    head = data[pos]
    if head <= 0x7F or head >= 0xE0:
        return "fixed", 0, 1
    if head <= 0x8F:
        return "map", head & 0x0F, 1
    if head <= 0x9F:
        return "array", head & 0x0F, 1
    if head <= 0xBF:
        return "str", head & 0x1F, 1
    if head in _FIXED_SIZE:
        return "fixed", _FIXED_SIZE[head], 1
    if head in _FIXEXT_SIZE:
        return "ext", _FIXEXT_SIZE[head], 2  # the type byte, then the data
    width, kind = _SIZED[head]  # every byte but 0xc1 is a header; 0xc1 is caught before
    if pos + 1 + width > len(data):
        return None
    length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
    if kind == "ext":
        return kind, length, 2 + width  # the type byte follows the length
    return kind, length, 1 + width


def _first_fault(data: bytes, limits: Limits) -> tuple[ErrorCode, str] | None:
    """The frame's first decoding fault in byte order, or None when it decodes.

    This is the one rule every decoder can follow (SPEC section 12): read the frame value by
    value; the first fault met decides the code. At one value, a length the frame does not
    hold (``malformed_frame``) comes before its limits, whatever the type. Faults checked:

    - ``malformed_frame``: no bytes, the reserved byte 0xc1, a value or a header cut short, a
      declared length (or count: an element is at least one byte, an entry two) the rest of
      the frame does not hold, a str that is not UTF-8, bytes after the frame's value;
    - ``unsupported_type``: a bin or ext value (key or value);
    - ``limit_exceeded``: a str, array or map over its limit, a map or array nested deeper
      than ``max_depth`` (the frame's own map is depth 1): depth is a decoder limit;
    - ``invalid_message``: a frame that is not a map (known from its first byte), a map key
      that is not a str, a key repeated in the frame's top-level map.

    Run only on frames already refused (by msgpack, or for depth or a repeated key, which
    msgpack does not check): plain Python, linear in the frame, bounded by ``max_depth``.
    """
    size = len(data)
    if not size:
        return ErrorCode.MALFORMED_FRAME, "empty frame"
    if data[0] == 0xC1:
        return ErrorCode.MALFORMED_FRAME, "reserved byte 0xc1"
    if not (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF)):
        return ErrorCode.INVALID_MESSAGE, "a frame must be a map"
    pos = 0
    # One entry per open map or array: [slots left, is a map]; a map has two slots per
    # entry, and its next slot is a key when an even number are left.
    stack: list[list[int]] = []
    top_keys: set[str] = set()
    while True:
        if pos >= size:
            return ErrorCode.MALFORMED_FRAME, "the frame ends inside a value"
        parent = stack[-1] if stack else None
        is_key = parent is not None and parent[1] == 1 and parent[0] % 2 == 0
        depth = len(stack) + 1
        if data[pos] == 0xC1:
            return ErrorCode.MALFORMED_FRAME, "reserved byte 0xc1"
        header = _header(data, pos)
        if header is None:
            return ErrorCode.MALFORMED_FRAME, "the frame ends inside a header"
        kind, length, head_size = header
        if is_key and kind not in ("str", "bin", "ext"):
            return ErrorCode.INVALID_MESSAGE, "map keys must be strings"
        body = pos + head_size
        if kind in ("array", "map"):
            need = length if kind == "array" else 2 * length
            if body + need > size:
                return ErrorCode.MALFORMED_FRAME, f"a {kind} declares more than the frame holds"
            if depth > limits.max_depth:
                return ErrorCode.LIMIT_EXCEEDED, f"nested more than {limits.max_depth} levels"
            limit = limits.max_array_len if kind == "array" else limits.max_map_len
            if length > limit:
                return ErrorCode.LIMIT_EXCEEDED, f"a msgpack {kind} is over its length limit"
            pos = body
        else:
            if body + length > size:
                what = "value" if kind == "fixed" else kind
                return ErrorCode.MALFORMED_FRAME, f"a {what} declares more than the frame holds"
            if kind in ("bin", "ext"):
                return ErrorCode.UNSUPPORTED_TYPE, f"{kind} values are not allowed"
            if kind == "str":
                if length > limits.max_str_bytes:
                    return ErrorCode.LIMIT_EXCEEDED, "a msgpack str is over its length limit"
                try:
                    text = data[body : body + length].decode("utf-8")
                except UnicodeDecodeError:
                    return ErrorCode.MALFORMED_FRAME, "a string is not valid UTF-8"
                if is_key and depth == 2:  # a key of the frame's own map
                    if text in top_keys:
                        return ErrorCode.INVALID_MESSAGE, f"duplicate key {text[:64]!r}"
                    top_keys.add(text)
            pos = body + length
        if parent is not None:
            parent[0] -= 1
        if kind in ("array", "map") and length:
            stack.append([length if kind == "array" else 2 * length, int(kind == "map")])
        elif not stack and kind == "map":
            break  # an empty top-level map
        while stack and stack[-1][0] == 0:
            stack.pop()
        if not stack:
            break
    if pos != size:
        return ErrorCode.MALFORMED_FRAME, "bytes after the frame's value"
    return None


def _recover_envelope(data: bytes, limits: Limits) -> tuple[int | None, str | None]:
    """The ``rid`` and ``"t"`` of a frame that msgpack refused, when they can be read safely
    (``_walk_envelope``)."""
    found = _walk_envelope(data, limits)
    message_type = found.get("t")
    return (
        _valid_rid(found.get("rid")),
        message_type if type(message_type) is str else None,
    )


# The top-level entries the envelope walk builds, and the first bytes their values must have.
_ENVELOPE_HEADS = {"rid": _INT_HEADS, "t": _STR_HEADS, "key": _STR_HEADS}


def _walk_envelope(data: bytes, limits: Limits) -> dict[str, object]:
    """The ``rid``, ``"t"`` and ``key`` entries of a frame's top-level map, read without
    building anything else.

    Walks the top-level map entry by entry with msgpack's streaming ``Unpacker`` and stops at the
    first entry it cannot read. Bounded on hostile input:

    - at most ``max_map_len`` entries (a larger top-level map gives up at once);
    - a key is read only when its first byte is a str header; anything else ends the walk. It
      is stepped over like a value and its bytes compared only when they are at most
      ``max_str_bytes`` long and valid UTF-8: any other key is no envelope key, and the walk
      goes on past its value;
    - the ``rid`` value is built only when its first byte is an int header; the ``"t"`` and
      ``key`` values are read like keys (a str within the string limit and valid UTF-8, else
      unusable, and the walk goes on: invalid UTF-8 in ``t`` loses ``t``, not the ``rid``);
      any other value is
      skipped with ``Unpacker.skip()``, which in msgpack's C implementation builds no object and
      checks no length limit (``construct`` is off in skip mode): a 10 KB string is stepped over
      by its declared length, a declared length the bytes do not hold ends the walk
      (``OutOfData``), and nesting beyond msgpack's fixed 1024-level stack ends it too
      (``StackError``). The work is linear in the frame, whose size the transport capped.

    A key seen twice yields ``_AMBIGUOUS`` for that key.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=len(data), **_options(limits))
    unpacker.feed(data)
    found: dict[str, object] = {}
    try:
        count = unpacker.read_map_header()
        if count > limits.max_map_len:
            return found
        for _ in range(count):
            if data[unpacker.tell()] not in _STR_HEADS:
                break  # a non-str key (or none left): the envelope ends here
            key = _step_over_str(unpacker, data, limits)
            heads = _ENVELOPE_HEADS.get(key) if key is not None else None
            if key is None or heads is None:
                unpacker.skip()
                continue
            value: object = None
            if data[unpacker.tell()] not in heads:
                unpacker.skip()
            elif heads is _INT_HEADS:
                value = unpacker.unpack()
            else:
                value = _step_over_str(unpacker, data, limits)
            found[key] = _AMBIGUOUS if key in found else value
    except (_ExtRefused, ValueError, msgpack.OutOfData, IndexError, TypeError):
        pass  # the walk ends at the first entry it cannot read; what was read before stands
    return found


def _step_over_str(unpacker: msgpack.Unpacker, data: bytes, limits: Limits) -> str | None:
    """Step over the str at the unpacker's position (its first byte is a str header) and
    return it, or None when it is over ``max_str_bytes`` or not valid UTF-8. Raises
    ``OutOfData`` when the frame does not hold its declared length."""
    start = unpacker.tell()
    unpacker.skip()  # builds nothing: no UTF-8 check, no length limit
    end = unpacker.tell()
    head = data[start]
    body = start + (1 if head <= 0xBF else {0xD9: 2, 0xDA: 3, 0xDB: 5}[head])
    if end - body > limits.max_str_bytes:
        return None
    try:
        return data[body:end].decode("utf-8")
    except UnicodeDecodeError:
        return None


@attrs.frozen
class Envelope:
    """What ``peek`` could read of a frame without decoding it: each field is None when the
    entry is absent, of the wrong type, repeated, or beyond the first entry the walk could not
    read."""

    #: ``"t"``, the message type (not checked against the registry).
    type: str | None
    #: ``rid``, when an int 0..2^31-1.
    rid: int | None
    #: ``key``, the operator key of ``create_session`` and ``generate``.
    key: str | None


#: Frames up to this size are unpacked whole by ``peek`` (see there).
_PEEK_UNPACK_BYTES = 512


def peek(data: bytes, *, limits: Limits | None = None) -> Envelope:
    """The type, ``rid`` and operator ``key`` of a client frame, read by a bounded walk of its
    top-level map that builds nothing else (see ``_walk_envelope``): the cost of a frame that
    will be refused anyway (throttled, or too big without the operator key) stays a skim.

    Never raises; a frame that is not a readable map gives an all-None envelope.

    A frame of at most ``_PEEK_UNPACK_BYTES`` is unpacked whole instead: for a ``ping`` or an
    ``answer`` that is faster than the walk (a flood of them is exactly what gets throttled),
    and it builds at most a few KiB. The result is the same (a repeated key still yields None:
    then the walk decides).
    """
    limits = limits or CLIENT_LIMITS
    if len(data) <= _PEEK_UNPACK_BYTES:
        try:
            frame = msgpack.unpackb(data, **_options(limits))
        except (msgpack.ExtraData, _ExtRefused, ValueError, TypeError, OverflowError):
            pass  # the walk reads what can be read of it
        else:
            if type(frame) is not dict:
                return Envelope(type=None, rid=None, key=None)
            # The walk's answer exactly, when it would have read every entry: no repeated key
            # (the declared count is the built one) and no key but str ones.
            if _map_header(data) == len(frame) and all(type(k) is str for k in frame):
                return _envelope(frame)
    return _envelope(_walk_envelope(data, limits))


def _envelope(found: dict[str, object]) -> Envelope:
    message_type, key = found.get("t"), found.get("key")
    return Envelope(
        type=message_type if type(message_type) is str else None,
        rid=_valid_rid(found.get("rid")),
        key=key if type(key) is str else None,
    )


def _map_header(data: bytes) -> int | None:
    """The entry count declared by a top-level map header, or None if the frame is no map."""
    first = data[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F
    if first == 0xDE and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDF and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    return None


def _nested_too_deep(frame: dict[str, Any], depth_left: int) -> bool:
    """Whether a value of the frame's map nests more than ``depth_left`` levels. On the hot
    path: a loop with no call for the scalars that most fields are."""
    for value in frame.values():
        kind = type(value)
        if (kind is list or kind is dict) and _too_deep(value, depth_left):
            return True
    return False


def _too_deep(value: Any, depth_left: int) -> bool:
    """Whether ``value`` nests maps/arrays more than ``depth_left`` levels deep."""
    if type(value) is dict:
        if depth_left <= 0:
            return True
        return any(_too_deep(item, depth_left - 1) for item in value.values())
    if type(value) is list:
        if depth_left <= 0:
            return True
        return any(_too_deep(item, depth_left - 1) for item in value)
    return False


def _valid_rid(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= U31_MAX else None


def decode(
    data: bytes,
    *,
    direction: Direction = Direction.CLIENT_TO_SERVER,
    limits: Limits | None = None,
) -> Message:
    """Decode one frame into its message, or raise ``DecodeError``.

    ``direction`` is the way the frame travelled: the server decodes ``CLIENT_TO_SERVER``
    (the default), a client decodes ``SERVER_TO_CLIENT``. ``limits`` defaults to
    ``CLIENT_LIMITS`` or ``SERVER_LIMITS`` accordingly.
    """
    client_frame = direction is Direction.CLIENT_TO_SERVER
    if limits is None:
        limits = CLIENT_LIMITS if client_frame else SERVER_LIMITS
    size = len(data)
    # Only an operator's create_session may be bigger than max_frame_bytes, and only up to its
    # own limit. Peek at the type without building the body, so a big junk frame costs a skim.
    if size > limits.max_frame_bytes and (
        not client_frame
        or size > limits.max_operator_frame_bytes
        or _walk_envelope(data, limits).get("t") != CreateSession.TYPE
    ):
        raise DecodeError(ErrorCode.FRAME_TOO_LARGE, f"frame of {size} bytes is over the limit")
    if not size:
        raise DecodeError(ErrorCode.MALFORMED_FRAME, "empty frame")

    frame = _unpack(data, limits)
    if type(frame) is not dict:
        raise DecodeError(ErrorCode.INVALID_MESSAGE, "a frame must be a map")
    # The decoding faults msgpack does not check: a repeated key (msgpack keeps the last;
    # another decoder might keep the first: the declared count is in the first bytes) and the
    # depth limit. They are decoding faults like msgpack's own, so the first in byte order
    # wins among all of them, before anything is checked about the message (SPEC section 12).
    if _map_header(data) != len(frame) or _nested_too_deep(frame, limits.max_depth - 1):
        code, message = _first_fault(data, limits) or (ErrorCode.INVALID_MESSAGE, "bad frame")
        _refuse(data, limits, code, message)
    message_type = frame.get("t")
    rid = _valid_rid(frame.get("rid"))
    if type(message_type) is not str:
        raise DecodeError(ErrorCode.INVALID_MESSAGE, 'missing "t" (message type)', rid=rid)
    cls = (CLIENT_MESSAGES if client_frame else SERVER_MESSAGES).get(message_type)
    if cls is None:
        raise DecodeError(
            ErrorCode.UNKNOWN_MESSAGE,
            f"unknown message type {message_type[:64]!r}",
            rid=rid,
            message_type=message_type,
        )
    keys = frame.keys()
    # Fast path: every field present (what canonical encoders send) needs one comparison.
    if keys != cls.ALLOWED_KEYS:
        _check_keys(keys, cls, rid, message_type)
    del frame["t"]
    try:
        return cls(**frame)
    except FieldError as exc:
        raise DecodeError(exc.code, str(exc), rid=rid, message_type=message_type) from None


def _check_keys(keys: Any, cls: type[Message], rid: int | None, message_type: str) -> None:
    """Raise for unknown, binary or missing keys (the frame is not a full canonical map)."""
    if not keys <= cls.ALLOWED_KEYS:
        if any(type(k) is bytes for k in keys):
            # Only an empty bin key gets this far (max_bin_len is 0); bin is bin, key or not.
            raise DecodeError(
                ErrorCode.UNSUPPORTED_TYPE,
                "binary map keys are not allowed",
                rid=rid,
                message_type=message_type,
            )
        extra = sorted(str(k) for k in keys - cls.ALLOWED_KEYS)
        raise DecodeError(
            ErrorCode.INVALID_MESSAGE,
            f"{message_type}: unexpected field(s) {', '.join(extra)[:200]}",
            rid=rid,
            message_type=message_type,
        )
    if not keys >= cls.REQUIRED:
        missing = sorted(cls.REQUIRED - keys)
        raise DecodeError(
            ErrorCode.INVALID_MESSAGE,
            f"{message_type}: missing field(s) {', '.join(missing)}",
            rid=rid,
            message_type=message_type,
        )


def from_wire(
    data: dict[str, Any], *, direction: Direction = Direction.CLIENT_TO_SERVER
) -> Message:
    """Build a message from its wire dict (``{"t": ..., fields...}``) with decode's checks on
    keys and values, but no msgpack step and no size or depth limits. For tests, the golden
    vectors and tools that hold JSON-like data."""
    message_type = data.get("t")
    rid = _valid_rid(data.get("rid"))
    registry = CLIENT_MESSAGES if direction is Direction.CLIENT_TO_SERVER else SERVER_MESSAGES
    cls = registry.get(message_type) if type(message_type) is str else None
    if cls is None:
        raise DecodeError(ErrorCode.UNKNOWN_MESSAGE, f"unknown message type {message_type!r}")
    keys = data.keys()
    if not (keys <= cls.ALLOWED_KEYS and keys >= cls.REQUIRED):
        raise DecodeError(ErrorCode.INVALID_MESSAGE, "unexpected or missing fields", rid=rid)
    fields = {k: v for k, v in data.items() if k != "t"}
    try:
        return cls(**fields)
    except FieldError as exc:
        raise DecodeError(exc.code, str(exc), rid=rid) from None
