"""The send side's frame accounting (``SendBacklog``) alone: no sockets, no trio.

A model: frames are queued (through a send the kernel takes part of, or behind a backlog),
the kernel takes some bytes, and a slow consumer's backlog is dropped. What the kernel took
plus what is queued is always the frames in order, and after a drop it ends on a frame
boundary (so the close frame that follows is a frame of its own on the wire).
"""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from pubquiz_engine.server.transport.backlog import SendBacklog


def _frames(sizes: list[int], start: int) -> list[bytes]:
    return [bytes([(start + i) % 251]) * size for i, size in enumerate(sizes)]


def _boundaries(frames: list[bytes]) -> set[int]:
    out, total = {0}, 0
    for frame in frames:
        total += len(frame)
        out.add(total)
    return out


_op = st.one_of(
    st.tuples(st.just("write"), st.lists(st.integers(1, 40), min_size=1, max_size=5),
              st.integers(0, 200)),
    st.tuples(st.just("consume"), st.integers(0, 120)),
    st.tuples(st.just("drop"),),
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.lists(_op, max_size=30))
def test_what_was_sent_plus_the_backlog_is_the_frames_in_order(ops: list[tuple]) -> None:
    backlog = SendBacklog()
    wire = bytearray()  # what the kernel took
    frames: list[bytes] = []  # every frame still meant to go out, in order
    for op in ops:
        if op[0] == "write":
            new = _frames(op[1], len(frames))
            data = b"".join(new)
            if backlog:
                # Behind a backlog nothing is sent: whole frames are queued.
                if len(new) == 1:
                    backlog.add_frame(new[0])
                else:
                    ends = sorted(_boundaries(new) - {0})
                    backlog.add_frames(data, ends)
            else:
                sent = min(op[2], len(data))
                wire += data[:sent]
                if sent < len(data):
                    ends = None if len(new) == 1 else sorted(_boundaries(new) - {0})
                    backlog.add_unsent(data, ends, sent)
            frames.extend(new)
        elif op[0] == "consume":
            n = min(op[1], len(backlog))
            wire += backlog.data[:n]
            backlog.consumed(n)
        else:
            backlog.drop_whole_frames()
            # What stays: the frames up to the end of the one partly on the wire.
            kept_end = len(wire) + len(backlog)
            stream = b"".join(frames)
            assert kept_end in _boundaries(frames), "a drop must end on a frame boundary"
            assert backlog.frame_lengths() == []
            # The frames after kept_end are gone.
            total, kept = 0, []
            for frame in frames:
                if total >= kept_end:
                    break
                kept.append(frame)
                total += len(frame)
            frames = kept
            assert stream[:kept_end] == b"".join(frames)
        assert backlog.partial + sum(backlog.frame_lengths()) == len(backlog)
        assert bytes(wire) + bytes(backlog.data) == b"".join(frames)
        # Every queued whole frame starts on a frame boundary.
        start = len(wire) + backlog.partial
        assert start in _boundaries(frames)


def test_a_frame_partly_sent_is_kept_whole_by_a_drop() -> None:
    backlog = SendBacklog()
    data = b"a" * 10 + b"b" * 10 + b"c" * 10
    backlog.add_unsent(data, [10, 20, 30], sent=14)  # half of the second frame went out
    assert backlog.partial == 6
    assert backlog.frame_lengths() == [10]
    backlog.drop_whole_frames()
    assert bytes(backlog.data) == b"b" * 6


def test_consumed_past_the_partial_frame_finds_the_next_boundary() -> None:
    backlog = SendBacklog()
    backlog.add_unsent(b"x" * 5 + b"y" * 7 + b"z" * 9, [5, 12, 21], sent=3)
    assert (backlog.partial, backlog.frame_lengths()) == (2, [7, 9])
    backlog.consumed(6)  # 2 of x, 4 of y
    assert (backlog.partial, backlog.frame_lengths()) == (3, [9])
    backlog.consumed(3)
    assert (backlog.partial, backlog.frame_lengths()) == (0, [9])
    backlog.drop_whole_frames()
    assert len(backlog) == 0


def test_add_unsent_needs_an_empty_backlog() -> None:
    backlog = SendBacklog()
    backlog.add_frame(b"abc")
    with pytest.raises(AssertionError):
        backlog.add_unsent(b"def", None, 1)
