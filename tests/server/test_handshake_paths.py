"""The handshake's two parsers (transport/handshake.py): the direct one for a plain upgrade
request and h11 + wsproto for everything else must answer every request alike.

Each request is fed to ``handshake()`` over a socket pair twice, once as it is and once with
the direct path switched off, and everything observable is compared: the bytes written back,
and for an upgrade its target, kept headers, subprotocol and the bytes behind the request.
"""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import hypothesis
import pytest
import trio
import trio.testing
from hypothesis import strategies as st

from pubquiz_engine.server.http import not_found
from pubquiz_engine.server.transport import handshake as hs
from pubquiz_engine.server.transport.config import Counters, TransportConfig

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: base64 of 16 bytes
FRAME = b"\x82\x85k3y!" + bytes(a ^ b for a, b in zip(b"hello", b"k3y!k", strict=True))

# (target, kept headers, subprotocol, trailing bytes) of an upgrade, or None.
Seen = tuple[str, tuple[tuple[str, str], ...], str | None, bytes] | None


@contextmanager
def _direct_path(enabled: bool) -> Iterator[list[bool]]:
    """Run with the direct parser on or off; yields a list of whether it answered each call."""
    original = hs._fast_upgrade
    answered: list[bool] = []

    def spy(data: bytes, config: TransportConfig) -> tuple[bytes, hs.Upgrade] | None:
        result = original(data, config) if enabled else None
        answered.append(result is not None)
        return result

    hs._fast_upgrade = spy  # type: ignore[assignment]
    try:
        yield answered
    finally:
        hs._fast_upgrade = original  # type: ignore[assignment]


def _exchange(pieces: list[bytes], config: TransportConfig) -> tuple[bytes, Seen, int]:
    """Send ``pieces`` (the server reads between them), then EOF; what the server did."""

    async def main() -> tuple[bytes, Seen, int]:
        server, client = socket.socketpair()
        counters = Counters()
        with server, client:
            server.setblocking(False)
            seen: list[Seen] = []

            async def serve() -> None:
                upgrade = await hs.handshake(server, not_found, config, counters)
                if upgrade is None:
                    seen.append(None)
                    return
                seen.append(upgrade)

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(serve)
                    for piece in pieces:
                        client.sendall(piece)
                        await trio.testing.wait_all_tasks_blocked()
                    client.shutdown(socket.SHUT_WR)
            server.close()
            client.setblocking(True)
            response = b""
            while chunk := client.recv(65536):
                response += chunk
        return response, seen[0], counters.handshake_failures

    return trio.run(main)


def _both(pieces: list[bytes], config: TransportConfig) -> tuple[
    tuple[bytes, Seen, int], tuple[bytes, Seen, int], list[bool]
]:
    with _direct_path(True) as answered:
        direct = _exchange(pieces, config)
    with _direct_path(False):
        h11_only = _exchange(pieces, config)
    return direct, h11_only, answered


def _request(*headers: bytes, target: bytes = b"/ws", tail: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) \
        + b"\r\n" + tail


BROWSER = (
    b"Host: quiz.example:8080",
    b"Connection: Upgrade",
    b"Pragma: no-cache",
    b"Cache-Control: no-cache",
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
    b"Upgrade: websocket",
    b"Origin: https://quiz.example",
    b"Sec-WebSocket-Version: 13",
    b"Accept-Encoding: gzip, deflate, br",
    b"Sec-WebSocket-Key: " + KEY,
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    b"Sec-WebSocket-Protocol: pubquiz.v1",
)


def test_a_browser_upgrade_takes_the_direct_path_and_matches_h11() -> None:
    config = TransportConfig()
    direct, h11_only, answered = _both([_request(*BROWSER, tail=FRAME)], config)
    assert answered == [True]
    assert direct == h11_only
    response, seen, failures = direct
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: pubquiz.v1\r\n\r\n"
    )
    assert seen is not None
    target, headers, subprotocol, trailing = seen
    assert (target, subprotocol, trailing, failures) == ("/ws", "pubquiz.v1", FRAME, 0)
    assert [n for n, _ in headers] == ["host", "pragma", "cache-control", "user-agent", "origin",
                                      "accept-encoding"]
    # Names and common values are the shared strings (memory per idle connection).
    assert headers[1][0] is hs._COMMON_HEADER_STRINGS[b"pragma"]
    assert headers[1][1] is hs._COMMON_HEADER_STRINGS[b"no-cache"]


def test_a_request_split_over_reads_is_answered_alike() -> None:
    config = TransportConfig()
    whole = _request(*BROWSER, tail=FRAME)
    at_once, _, _ = _both([whole], config)
    split_direct, split_h11, answered = _both([whole[:100], whole[100:]], config)
    assert answered == [False]  # the first read is not a whole request: h11 goes on
    assert split_direct == split_h11 == at_once


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({b"Sec-WebSocket-Key": base64.b64encode(b"x" * 15)}, b"400"),
        ({b"Sec-WebSocket-Key": base64.b64encode(b"x" * 17)}, b"400"),
        ({b"Sec-WebSocket-Key": b"not base64 at all!!!!!!="}, b"400"),
        ({b"Sec-WebSocket-Version": b"8"}, b"426"),
        ({b"Sec-WebSocket-Version": None}, b"400"),
        ({b"Host": None}, b"400"),
        ({b"Host": b"xn--abc"}, b"400"),  # wsproto's IDNA decode raised out of the handshake
        ({b"Connection": b"keep-alive"}, b"400"),
        ({b"Sec-WebSocket-Protocol": b"other"}, b"400"),
        ({b"Sec-WebSocket-Protocol": b"pubquiz.v1\xe9"}, b"400"),  # wsproto's ASCII decode
    ],
)
def test_refusals_are_the_same_on_both_paths(change: dict[bytes, bytes | None],
                                             status: bytes) -> None:
    headers = []
    for line in BROWSER:
        name = line.split(b":")[0]
        if name in change:
            if change[name] is not None:
                headers.append(name + b": " + change[name])  # type: ignore[operator]
        else:
            headers.append(line)
    direct, h11_only, answered = _both([_request(*headers)], TransportConfig())
    assert answered == [False]
    assert direct == h11_only
    assert direct[0].startswith(b"HTTP/1.1 " + status + b" ")
    assert direct[1] is None
    assert direct[2] == 1


def test_a_second_key_is_refused() -> None:
    direct, h11_only, _ = _both([_request(*BROWSER, b"Sec-WebSocket-Key: " + KEY)],
                                TransportConfig())
    assert direct == h11_only
    assert direct[0].startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    "extra",
    [
        b"Content-Length: x",  # h11 refuses it
        b"Content-Length: 3",
        b"Transfer-Encoding: chunked",
        b" folded onto the line before",
        b"Bad Name: x",
        b"User-Agent: caf\xe9",
        b"Sec-WebSocket-Extensions: x\xe9",  # wsproto's ASCII decode
        b"Sec-WebSocket-Protocol: x\xe9, pubquiz.v1",
        b"Sec-WebSocket-Protocol: a, pubquiz.v1",
        b"Origin: https://evil.example",
        b"Host: other.example",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Version: 13",
        b"X-Empty:",
    ],
)
@pytest.mark.parametrize(
    "config",
    [
        TransportConfig(),
        TransportConfig(allowed_origins=("https://quiz.example",)),
        TransportConfig(max_headers=len(BROWSER)),  # the extra line is one too many
        TransportConfig(max_header_bytes=len(b"".join(BROWSER)) + 20),
    ],
)
def test_one_unusual_line_is_answered_alike(extra: bytes, config: TransportConfig) -> None:
    direct, h11_only, _ = _both([_request(*BROWSER, extra, tail=FRAME)], config)
    assert direct == h11_only


# --- the same requests to both, generated ----------------------------------------------------

_KEYS = st.one_of(
    st.binary(min_size=16, max_size=16).map(base64.b64encode),
    st.binary(min_size=0, max_size=20).map(base64.b64encode),
    st.sampled_from([b"", b"abc", KEY + b" ", b"dGhlIHNhbXBsZSBub25jZQ"]),
)


def _header(name: bytes, values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(
        st.sampled_from([name, name.lower(), name.upper()]),
        st.sampled_from([b": ", b":", b":  ", b" : "]),
        values,
        st.sampled_from([b"", b" ", b"\t"]),
    ).map(b"".join)


_OPTIONAL = st.lists(
    st.one_of(
        _header(b"Host", st.sampled_from([b"localhost", b"127.0.0.1:9000", b"", b"xn--abc",
                                          b"[::1]:80"])),
        _header(b"Upgrade", st.sampled_from([b"websocket", b"WebSocket", b"h2c", b""])),
        _header(b"Connection", st.sampled_from([b"Upgrade", b"keep-alive, Upgrade", b"close",
                                                b"upgrade ,x", b"Upgrade\xff"])),
        _header(b"Sec-WebSocket-Key", _KEYS),
        _header(b"Sec-WebSocket-Version", st.sampled_from([b"13", b"8", b"13, 8", b""])),
        _header(b"Sec-WebSocket-Protocol", st.sampled_from(
            [b"pubquiz.v1", b"a, pubquiz.v1", b"other", b"pubquiz.v1 , b", b"PUBQUIZ.V1"])),
        _header(b"Origin", st.sampled_from([b"https://quiz.example", b"https://evil.example",
                                            b"null"])),
        _header(b"Sec-WebSocket-Extensions", st.sampled_from([b"permessage-deflate", b"x\xe9"])),
        _header(b"User-Agent", st.sampled_from([b"Mozilla/5.0 (X11)", b"caf\xe9", b"a\x01b"])),
        _header(b"X-Forwarded-For", st.sampled_from([b"203.0.113.7", b"2001:db8::1, 10.0.0.1"])),
        _header(b"Content-Length", st.sampled_from([b"0", b"3", b"x"])),
        st.sampled_from([b"Transfer-Encoding: chunked", b" folded", b"Bad Name: x", b"NoColon",
                         b"X-Empty:", b"X-Tab:\tv\t"]),
    ),
    max_size=6,
)

_BASE = [b"Host: localhost", b"Upgrade: websocket", b"Connection: Upgrade",
         b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 13",
         b"Sec-WebSocket-Protocol: pubquiz.v1"]

_CONFIGS = st.sampled_from([
    TransportConfig(),
    TransportConfig(allowed_origins=("https://quiz.example",)),
    TransportConfig(require_subprotocol=False),
    TransportConfig(max_headers=4),
    TransportConfig(max_header_bytes=200),
])


@st.composite
def _requests(draw: st.DrawFn) -> list[bytes]:
    # Mostly a valid upgrade with a few changes, so that both paths get their share.
    base = draw(st.one_of(st.just(_BASE), st.lists(st.sampled_from(_BASE), unique=True)))
    lines = draw(st.permutations(base + draw(_OPTIONAL)))
    first = draw(st.sampled_from([b"GET /ws HTTP/1.1"] * 6 + [
        b"GET /ws?x=1&y=%20 HTTP/1.1", b"POST /ws HTTP/1.1", b"GET /ws HTTP/1.0",
        b"get /ws HTTP/1.1", b"GET  /ws HTTP/1.1", b"GET /w\xe9 HTTP/1.1"]))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n"]))
    tail = draw(st.sampled_from([b"", FRAME, b"\r\n", b"GET / HTTP/1.1\r\n\r\n"]))
    data = draw(st.sampled_from([b""] * 6 + [b"\r\n"])) + first + eol \
        + b"".join(line + eol for line in lines) + eol + tail
    cut = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(1, len(data) - 1)))
    return [data] if cut is None else [data[:cut], data[cut:]]


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(pieces=_requests(), config=_CONFIGS)
def test_generated_requests_are_answered_alike(pieces: list[bytes],
                                               config: TransportConfig) -> None:
    direct, h11_only, _ = _both(pieces, config)
    assert direct == h11_only


def test_the_generated_requests_reach_the_direct_path() -> None:
    """The comparison above means something only if the direct path answers some of them."""
    config = TransportConfig()
    found = []

    @hypothesis.settings(max_examples=200, deadline=None, database=None)
    @hypothesis.given(pieces=_requests())
    def sample(pieces: list[bytes]) -> None:
        found.append(hs._fast_upgrade(pieces[0], config) is not None)

    sample()
    assert any(found)
    assert not all(found)


# --- handshake_now: the part that needs no wait (server.py runs it without a deadline) ----


def _pair() -> tuple[socket.socket, socket.socket]:
    server, client = socket.socketpair()
    server.setblocking(False)
    return server, client


def test_a_request_already_there_is_upgraded_without_a_wait() -> None:
    """The common case: TCP_DEFER_ACCEPT hands the connection over with its request. No
    trio at all here: ``handshake_now`` cannot wait."""
    whole = _request(*BROWSER, tail=FRAME)
    expected_response, expected, _ = _exchange([whole], TransportConfig())
    server, client = _pair()
    with server, client:
        client.sendall(whole)
        upgrade = hs.handshake_now(server, TransportConfig())
        assert upgrade == expected
        client.setblocking(False)
        assert client.recv(65536) == expected_response


def test_nothing_there_yet_leaves_the_whole_handshake_to_the_waiting_part() -> None:
    whole = _request(*BROWSER)
    _, expected, _ = _exchange([whole], TransportConfig())
    server, client = _pair()
    with server, client:
        started = hs.handshake_now(server, TransportConfig())
        assert started == hs.Started()  # nothing read, nothing sent

        async def main() -> hs.Upgrade | None:
            client.sendall(whole)
            return await hs.handshake(server, not_found, TransportConfig(), Counters(),
                                      started)  # type: ignore[arg-type]

        assert trio.run(main) == expected


def test_a_partial_request_is_carried_on_by_h11() -> None:
    whole = _request(*BROWSER, tail=FRAME)
    _, expected, _ = _exchange([whole], TransportConfig())
    server, client = _pair()
    with server, client:
        client.sendall(whole[:100])
        started = hs.handshake_now(server, TransportConfig())
        assert isinstance(started, hs.Started)
        assert started.first == whole[:100] and started.upgrade is None

        async def main() -> hs.Upgrade | None:
            client.sendall(whole[100:])
            return await hs.handshake(server, not_found, TransportConfig(), Counters(), started)

        assert trio.run(main) == expected


def test_a_101_the_send_buffer_cannot_take_is_finished_by_the_waiting_part() -> None:
    """The server's send buffer is full (filler nobody read yet): the 101 goes out in part or
    not at all, and ``handshake`` sends the rest once the peer reads; the peer gets the whole
    101 after the filler, and the upgrade is the same."""
    whole = _request(*BROWSER, tail=FRAME)
    expected_response, expected, _ = _exchange([whole], TransportConfig())
    server, client = _pair()
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        filler = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                filler += server.send(b"x" * 1024)
        client.sendall(whole)
        started = hs.handshake_now(server, TransportConfig())
        assert isinstance(started, hs.Started)
        assert started.upgrade == expected and 0 < len(started.unsent) <= len(expected_response)
        assert expected_response.endswith(started.unsent)

        async def main() -> tuple[hs.Upgrade | None, bytes]:
            received = bytearray()
            result: list[hs.Upgrade | None] = []

            async def finish() -> None:
                result.append(await hs.handshake(server, not_found, TransportConfig(),
                                                 Counters(), started))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(finish)
                client.setblocking(False)
                while len(received) < filler + len(expected_response):
                    await trio.lowlevel.wait_readable(client)
                    received += client.recv(65536)
            return result[0], bytes(received)

        upgrade, received = trio.run(main)
        assert upgrade == expected
        assert received == b"x" * filler + expected_response
