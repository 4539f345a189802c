"""Hard limits the codec enforces while it decodes a pubquiz.v1 frame.

Rules this module keeps:

1. A ``Limits`` is plain, frozen configuration: the codec reads it, nothing mutates it.
2. Every limit bounds memory or CPU *before* the cost is paid. The frame size is checked before
   msgpack sees a byte; string, array and map lengths are handed to msgpack itself
   (``max_str_len``, ``max_array_len``, ``max_map_len``), which checks a declared length before it
   allocates anything, so a 6-byte frame declaring a 4-billion-entry array costs nothing.
3. Two defaults exist because the two directions trust differently: ``CLIENT_LIMITS`` for frames a
   server decodes from untrusted clients, ``SERVER_LIMITS`` for frames a client decodes from the
   server (a host's full ``state`` may list thousands of participants).

Per-field limits (a name is at most 64 characters, a join code at most 16, ...) are part of the
message schema in ``messages.py``, not of this class: they are the protocol, not a deployment knob.
"""

from __future__ import annotations

import attrs

KIB = 1024
MIB = 1024 * KIB


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    # bool is an int subclass; a limit of True would be a bug, not a setting.
    if type(value) is not int or value < 1:
        raise ValueError(f"Limits.{attribute.name} must be a positive int, got {value!r}")


@attrs.frozen(kw_only=True)
class Limits:
    """Decoding limits for one direction of the protocol.

    Defaults are those of ``CLIENT_LIMITS`` (frames from untrusted clients).
    """

    #: Largest frame (one WebSocket binary message) for every message type except
    #: ``create_session``. Bigger frames fail with ``frame_too_large`` (close 1009).
    max_frame_bytes: int = attrs.field(default=64 * KIB, validator=_positive)
    #: Largest ``create_session`` frame: an operator may send a whole quiz inline. Frames between
    #: ``max_frame_bytes`` and this size are *peeked* (the type is read without building the
    #: body); anything that is not a ``create_session`` fails with ``frame_too_large``. The
    #: transport's message cap must be at least this large for inline quizzes to get through;
    #: deployments that only use ``quiz_path`` can set it equal to ``max_frame_bytes``.
    max_operator_frame_bytes: int = attrs.field(default=1 * MIB, validator=_positive)
    #: Longest msgpack string, in UTF-8 bytes (map keys included). Fields may say less.
    max_str_bytes: int = attrs.field(default=4 * KIB, validator=_positive)
    #: Most entries in any one array.
    max_array_len: int = attrs.field(default=1000, validator=_positive)
    #: Most entries in any one map.
    max_map_len: int = attrs.field(default=1000, validator=_positive)
    #: Deepest nesting of maps and arrays; the frame's own top-level map is depth 1.
    #: (msgpack's C decoder refuses more than 1024 levels by itself, without recursion, so the
    #: depth walk that enforces this limit after decoding is bounded by both the frame size and
    #: that hard stack limit.)
    max_depth: int = attrs.field(default=16, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.max_operator_frame_bytes < self.max_frame_bytes:
            raise ValueError("Limits.max_operator_frame_bytes must be >= max_frame_bytes")


#: Frames a server decodes from clients (players, hosts, displays, operators).
CLIENT_LIMITS = Limits()

#: Frames a client decodes from a server: trusted, but still bounded so that a broken or
#: hostile server cannot make a phone allocate without limit.
SERVER_LIMITS = Limits(
    max_frame_bytes=4 * MIB,
    max_operator_frame_bytes=4 * MIB,
    max_str_bytes=64 * KIB,
    max_array_len=100_000,
    max_map_len=100_000,
    max_depth=16,
)
