"""The floor under a broadcast: what N ``send()`` system calls on loopback TCP cost here.

Run: ``.venv/bin/python bench/broadcast_floor.py [N]`` (default 9,000: two sockets per
connection must fit the 20,000 open files of these machines). Opens N loopback TCP
connections, then sends one 80-byte frame (a ``question``'s size) to every server-side socket
in a plain loop, as the transport's flush does, five times; prints the best and the median
time per broadcast and per ``send()``, and the process's user/system CPU split of the loop.
Scale the per-send figure to 19,000 for DESIGN 9's "handed to the kernel in < 100 ms".

Only 127.0.0.1; every loop is bounded by N and the repetitions.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import sys
import time


def main(n: int) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    clients: list[socket.socket] = []
    servers: list[socket.socket] = []
    try:
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port))
            s, _addr = listener.accept()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            clients.append(c)
            servers.append(s)
        frame = b"\x82\x4e" + bytes(78)
        times = []
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(5):
            t0 = time.perf_counter()
            for s in servers:
                s.send(frame)
            times.append(time.perf_counter() - t0)
            for c in clients:  # drain, so every round starts with empty buffers
                c.recv(4096)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for sock in (*clients, *servers, listener):
            sock.close()
    best, median = min(times), statistics.median(times)
    user = usage1.ru_utime - usage0.ru_utime
    system = usage1.ru_stime - usage0.ru_stime
    print(f"{n} sends: best {best * 1000:.1f} ms, median {median * 1000:.1f} ms per broadcast; "
          f"{best / n * 1e6:.2f} us per send() at best -> {best / n * 19000 * 1000:.0f} ms "
          f"for 19,000; CPU of the loops and drains: user {user:.2f} s, system {system:.2f} s "
          f"(pid {os.getpid()})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9000)
