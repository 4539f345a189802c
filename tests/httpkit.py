"""A plain HTTP/1.1 GET over a raw socket, for tests of the engine's HTTP side.

The engine answers one request per connection (``connection: close``), so the response is
everything read until EOF.
"""

from __future__ import annotations

import contextlib

import trio


async def http_exchange(port: int, raw_request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw_request`` to 127.0.0.1:``port`` as is; (status, lower-cased headers, body) of
    the response, read to EOF (a server refusing a request may reset the connection after its
    answer: what arrived before counts)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw_request)
        data = b""
        with contextlib.suppress(trio.BrokenResourceError):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, fields, body


async def http_get(port: int, path: str, headers: dict[str, str] | None = None, *,
                   extra: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of ``GET path`` on 127.0.0.1:``port``; ``extra`` is
    raw header lines appended as they are (for oversized or malformed ones)."""
    fields = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{fields}".encode() + extra + b"\r\n"
    return await http_exchange(port, request)
