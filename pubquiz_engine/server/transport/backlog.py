"""The send side's frame accounting: bytes the kernel has not taken yet, and where frames
start in them. Pure (no sockets, no trio): ``WebSocket`` drives it, tests drive it alone.

Why frame boundaries matter: when a slow consumer's backlog is dropped (close 4101), the close
frame must follow a frame boundary, so the rest of a frame already partly on the wire is kept
and every whole frame after it is dropped.
"""

from __future__ import annotations

import bisect
import collections

__all__ = ["SendBacklog"]


class SendBacklog:
    """Queued outgoing bytes: ``partial`` bytes at the head finish a frame already partly
    sent, then whole frames whose lengths are in ``lengths``.

    A connection makes one only when the kernel first refuses bytes (an idle or keeping-up
    connection has none: the deque alone is ~740 bytes).
    """

    __slots__ = ("_lengths", "_partial", "data")

    def __init__(self) -> None:
        #: The queued bytes, oldest first; ``socket.send(backlog.data)`` sends from the head.
        self.data = bytearray()
        self._partial = 0
        self._lengths: collections.deque[int] = collections.deque()

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    @property
    def partial(self) -> int:
        """Bytes at the head that finish a frame already partly handed to the kernel."""
        return self._partial

    def frame_lengths(self) -> list[int]:
        """The lengths of the whole frames queued after ``partial`` (for tests and asserts)."""
        return list(self._lengths)

    def add_frame(self, frame: bytes | bytearray) -> None:
        """Queue one whole frame behind the backlog."""
        self.data += frame
        self._lengths.append(len(frame))

    def add_frames(self, data: bytes | bytearray, ends: list[int]) -> None:
        """Queue whole frames behind the backlog; ``ends`` are their end offsets in ``data``."""
        prev = 0
        for end in ends:
            self._lengths.append(end - prev)
            prev = end
        self.data += data

    def add_unsent(self, data: bytes | bytearray, ends: list[int] | None, sent: int) -> None:
        """The kernel took the first ``sent`` bytes of ``data`` (frames ending at ``ends``,
        ``None``: one frame) with this backlog empty: queue the rest, noting the frame the
        kernel took only part of."""
        assert not self.data, "add_unsent is for a send made with an empty backlog"
        self.data += memoryview(data)[sent:]
        if ends is None:
            ends = [len(data)]
        first = bisect.bisect_right(ends, sent)  # the first frame not wholly sent
        if sent > (ends[first - 1] if first else 0):
            # That frame is partly on the wire: its rest must be sent whatever happens.
            self._partial = ends[first] - sent
            prev = ends[first]
            first += 1
        else:
            self._partial = 0
            prev = sent
        for end in ends[first:]:
            self._lengths.append(end - prev)
            prev = end

    def consumed(self, n: int) -> None:
        """The kernel took ``n`` bytes from the head."""
        del self.data[:n]
        if n <= self._partial:
            self._partial -= n
            return
        n -= self._partial
        lengths = self._lengths
        while lengths and n >= lengths[0]:
            n -= lengths.popleft()
        self._partial = 0
        if n and lengths:
            self._partial = lengths.popleft() - n

    def drop_whole_frames(self) -> None:
        """Drop every frame not yet started; keep the rest of the one partly on the wire."""
        del self.data[self._partial :]
        self._lengths.clear()

    def clear(self) -> None:
        self.data.clear()
        self._lengths.clear()
        self._partial = 0
