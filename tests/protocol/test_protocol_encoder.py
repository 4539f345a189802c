"""``codec.Encoder``, the hot path's encoder: the same bytes as ``codec.encode``, always.

The engine encodes its connections' and sessions' frames with one reused packer per thread,
and refusals without building the ``ErrorReply`` (``encode_error``), a join's welcome, state and
``player_joined`` without building theirs; a client written from the
SPEC sees only the bytes, so they must be ``encode``'s exactly.
"""

from __future__ import annotations

import strategies
from hypothesis import given
from hypothesis import strategies as st

from pubquiz_engine.errors import ErrorCode
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.protocol.fields import MAX_MESSAGE_CHARS, U31_MAX

_ENCODER = codec.Encoder()


@given(strategies.server_messages())
def test_the_reused_packer_gives_encodes_bytes(message: m.Message) -> None:
    assert _ENCODER.encode(message) == codec.encode(message)


@given(
    rid=st.none() | st.integers(0, U31_MAX),
    code=st.sampled_from(list(ErrorCode)),
    message=strategies.texts(MAX_MESSAGE_CHARS),
    retry_after_ms=st.none() | st.integers(0, U31_MAX),
)
def test_an_error_encoded_unbuilt_is_the_error_replys_bytes(
    rid: int | None, code: ErrorCode, message: str, retry_after_ms: int | None
) -> None:
    built = m.ErrorReply(rid=rid, code=code.value, message=message, retryable=code.retryable,
                         retry_after_ms=retry_after_ms)
    data = _ENCODER.encode_error(rid, code.value, message, code.retryable, retry_after_ms)
    assert data == codec.encode(built)
    assert codec.decode(data, direction=m.Direction.SERVER_TO_CLIENT) == built


@given(strategies.message_strategy(m.Welcome))
def test_a_welcome_encoded_unbuilt_is_the_welcomes_bytes(welcome: m.Message) -> None:
    assert isinstance(welcome, m.Welcome)
    data = _ENCODER.encode_welcome(
        welcome.rid, welcome.role, welcome.code, welcome.epoch, welcome.seq,
        welcome.participant, welcome.name, welcome.team, welcome.token, welcome.replay)
    assert data == codec.encode(welcome)


@given(strategies.message_strategy(m.State))
def test_a_state_encoded_unbuilt_is_the_states_bytes(state: m.Message) -> None:
    assert isinstance(state, m.State)
    assert _ENCODER.encode_state(state.seq, state.state) == codec.encode(state)


@given(strategies.message_strategy(m.PlayerJoined))
def test_a_player_joined_encoded_unbuilt_is_its_messages_bytes(joined: m.Message) -> None:
    assert isinstance(joined, m.PlayerJoined)
    data = _ENCODER.encode_player_joined(joined.seq, joined.participant, joined.name,
                                         joined.team)
    assert data == codec.encode(joined)
