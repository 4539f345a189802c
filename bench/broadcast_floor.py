"""The floor under a broadcast: what N ``send()`` system calls on loopback TCP cost here.

Run: ``.venv/bin/python bench/broadcast_floor.py [--json] [--readers | --engine PID:PORT] [N]``
(default 9,000).
Opens N loopback TCP connections, then sends one 80-byte frame (a ``question``'s size) to every
server-side socket in a plain loop, as the transport's flush does, five times; prints the best
and the median time per broadcast and per ``send()``, and the process's user/system CPU split
of the loop (``--json``: the same figures as one JSON object, for ``bench.harness
connections``). ``--readers``: the client sides are read by a child process waiting in epoll on
another core (as a load generator's clients wait), so each ``send()`` also pays for waking a
reader.
Scale the per-send figure to 19,000 for DESIGN 9's "handed to the kernel in < 100 ms".

``--engine PID:PORT`` (Linux 5.6+, as root or a tracer of PID; elsewhere it says so, as
``{"unavailable": ...}`` with ``--json``, and exits 0): the same loop over a running
engine's *own* connections, the sockets of PID connected on its port PORT, borrowed with
``pidfd_getfd`` (a second descriptor of the same socket; the engine's stays as it was). Each
gets an unsolicited 80-byte WebSocket ``pong`` (RFC 6455 5.5.3: a peer does not answer one),
so the engine's peers, as they wait in their own epoll, are the readers: the floor under the
engine's broadcast with its own sockets and readers, which ``bench.harness connections`` runs
on the engine's core once its broadcasts are done (the engine idle meanwhile).

The client sides live in a child process, so the sender holds one descriptor per connection,
as the engine does: 19,000 fit the 20,000 open files of these machines (the soft limit is
raised to the hard one where it is lower; ``sockets`` in the result says how many were opened
when N does not fit).

The pieces (``open_pairs``, ``send_loop``, ``drain``, ``close_all``) are shared with
``bench/broadcast_path.py``, which runs the engine's own broadcast path over the same sockets.

Only 127.0.0.1; every loop is bounded by N and the repetitions.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import socket
import statistics
import sys
import time
from typing import Any

#: A binary frame of 80 bytes (78 of payload): the size of a ``question`` broadcast.
FRAME = b"\x82\x4e" + bytes(78)
#: An unsolicited ``pong`` of the same size, for the engine's own connections: a WebSocket
#: client neither answers it nor hands it to its application.
PONG = b"\x8a\x4e" + bytes(78)
#: ``pidfd_getfd(2)``'s system call number on x86_64 and arm64 (not in ``os`` before 3.14).
_SYS_PIDFD_GETFD = 438


def fit_open_files(n: int) -> int:
    """Raise RLIMIT_NOFILE so that the server sides of ``n`` connections (plus a margin) fit,
    as far as this process may; return how many connections fit."""
    need = n + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:  # as root the hard limit may be raised too (CAP_SYS_RESOURCE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(need, hard)))
        except (ValueError, OSError):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(n, soft - 64))


def open_pairs(n: int) -> tuple[socket.socket, list[socket.socket], list[socket.socket]]:
    """N loopback TCP connections: (listener, client sides, server sides). The server sides
    are non-blocking with TCP_NODELAY, as the engine's accepted sockets."""
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
    except BaseException:
        close_all(listener, clients, servers)
        raise
    return listener, clients, servers


def send_loop(servers: list[socket.socket], frame: bytes) -> float:
    """The floor: one ``send()`` of ``frame`` per socket in a bare loop; seconds taken."""
    t0 = time.perf_counter()
    for s in servers:
        s.send(frame)
    return time.perf_counter() - t0


def drain(clients: list[socket.socket]) -> None:
    """Read what each client socket holds, so the next round starts with empty buffers."""
    for c in clients:
        c.recv(65536)


def close_all(listener: socket.socket, clients: list[socket.socket],
              servers: list[socket.socket]) -> None:
    for sock in (*clients, *servers, listener):
        sock.close()


def _client_process(port: int, n: int, readers: bool, commands: int, replies: int) -> None:
    """The child that holds the client sides (so the parent holds only the N server sides and
    19,000 of them fit its open files), on the cores the parent is not pinned to. It connects
    N times and says ``c``. Then with ``readers`` it waits in epoll on every client socket (as
    a load generator's clients do) and reads what arrives, until ``commands`` reaches EOF;
    without, it waits on ``commands`` only: ``d`` drains every client socket and says ``k``
    (nobody waits on the sockets while the parent sends)."""
    others = set(range(os.cpu_count() or 1)) - os.sched_getaffinity(0)
    if others:
        os.sched_setaffinity(0, others)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    os.write(replies, b"c")
    if readers:
        ep = select.epoll()
        by_fd = {c.fileno(): c for c in clients}
        for fd in by_fd:
            ep.register(fd, select.EPOLLIN)
        ep.register(commands, select.EPOLLIN)
        while True:
            for fd, _mask in ep.poll():
                if fd == commands:
                    os._exit(0)
                by_fd[fd].recv(65536)
    while os.read(commands, 1) == b"d":
        for c in clients:
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.recv(65536)
        os.write(replies, b"k")
    os._exit(0)


def _expect(fd: int, what: bytes) -> None:
    got = os.read(fd, 1)
    if got != what:
        raise RuntimeError(f"the client process said {got!r}, not {what!r}")


def measure(n: int, rounds: int = 5, *, readers: bool = False) -> dict[str, Any]:
    """The floor over ``n`` sockets: every round's seconds, best and median, CPU split.

    The client sides live in a child process on another core. ``readers``: the child waits
    in epoll on them, so each ``send()`` also wakes a waiting reader, as in the engine's runs;
    by default nobody waits on them (the child drains them after each round, untimed)."""
    n = fit_open_files(n)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.settimeout(60)  # bounded: a child that died leaves accept() waiting
    port = listener.getsockname()[1]
    commands_r, commands_w = os.pipe()
    replies_r, replies_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            listener.close()
            os.close(commands_w)  # (or the pipe never reaches EOF)
            os.close(replies_r)
            _client_process(port, n, readers, commands_r, replies_w)
        finally:
            os._exit(1)
    os.close(commands_r)
    os.close(replies_w)
    servers: list[socket.socket] = []
    try:
        for _ in range(n):
            s, _addr = listener.accept()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            servers.append(s)
        _expect(replies_r, b"c")
        times = []
        cpu = []  # the process's CPU time of each loop
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(rounds):
            if readers:
                time.sleep(0.2)  # the reader is back waiting in epoll_wait
            c0 = time.process_time()
            times.append(send_loop(servers, FRAME))
            cpu.append(time.process_time() - c0)
            if not readers:
                os.write(commands_w, b"d")
                _expect(replies_r, b"k")
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(commands_w)
        os.waitpid(child, 0)
        os.close(replies_r)
        for sock in (*servers, listener):
            sock.close()
    return {"sockets": n, "rounds": rounds, "frame_bytes": len(FRAME), "readers": readers,
            **_figures(n, times, cpu, usage0, usage1)}


def _figures(n: int, times: list[float], cpu: list[float], usage0: resource.struct_rusage,
             usage1: resource.struct_rusage) -> dict[str, Any]:
    """The loops' figures: every round's time, best and median, per ``send()``, CPU."""
    best, median = min(times), statistics.median(times)
    return {
        "round_ms": [round(t * 1000, 3) for t in times],
        "best_ms": round(best * 1000, 3), "median_ms": round(median * 1000, 3),
        "per_send_us_best": round(best / n * 1e6, 3),
        "per_send_us_median": round(median / n * 1e6, 3),
        "cpu_round_ms": [round(t * 1000, 3) for t in cpu],
        "per_send_cpu_us_median": round(statistics.median(cpu) / n * 1e6, 3),
        # the sender's CPU over the rounds: its loops (and its waits for a child)
        "user_s": round(usage1.ru_utime - usage0.ru_utime, 3),
        "system_s": round(usage1.ru_stime - usage0.ru_stime, 3),
        "pid": os.getpid(),
    }


def borrow_connections(pid: int, port: int) -> list[socket.socket]:
    """A descriptor of each TCP socket of ``pid`` connected on its local ``port`` (its
    listener and every other socket left out), by ``pidfd_getfd``."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    borrowed: list[socket.socket] = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except FileNotFoundError:
                continue  # closed since the listing
            fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                err = ctypes.get_errno()
                if err == errno.EBADF:
                    continue  # closed since the listing
                raise OSError(err, f"pidfd_getfd of fd {name} of pid {pid}: {os.strerror(err)}")
            sock = socket.socket(fileno=fd)
            try:
                if (sock.family not in (socket.AF_INET, socket.AF_INET6)
                        or sock.type != socket.SOCK_STREAM
                        or sock.getsockname()[1] != port):
                    raise OSError("not one of the engine's connections")
                sock.getpeername()  # the listener has no peer (ENOTCONN)
            except OSError:
                sock.close()  # only this descriptor: the engine's stays open
                continue
            borrowed.append(sock)
    finally:
        os.close(pidfd)
    return borrowed


def measure_engine(pid: int, port: int, rounds: int = 5) -> dict[str, Any]:
    """The floor over a running engine's own connections (see the module docstring): an
    unsolicited pong to each in a bare loop, ``rounds`` times, its peers waiting in epoll."""
    fit_open_files(sum(1 for _ in os.scandir(f"/proc/{pid}/fd")))
    socks = borrow_connections(pid, port)
    if not socks:
        raise RuntimeError(f"no connection of pid {pid} on port {port}")
    try:
        times = []
        cpu = []
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(rounds):
            time.sleep(0.2)  # the peers are back waiting in epoll
            c0 = time.process_time()
            times.append(send_loop(socks, PONG))
            cpu.append(time.process_time() - c0)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for sock in socks:
            sock.close()
    n = len(socks)
    return {"sockets": n, "rounds": rounds, "frame_bytes": len(PONG), "readers": True,
            "engine_connections": True, "engine_pid": pid,
            **_figures(n, times, cpu, usage0, usage1)}


def _unavailable(exc: OSError) -> bool:
    """Whether ``exc`` says this machine or user cannot borrow another process's sockets
    (not root nor its tracer, or a kernel before 5.6), rather than that something failed."""
    return isinstance(exc, PermissionError) or exc.errno == errno.ENOSYS


def main(n: int, as_json: bool = False, readers: bool = False,
         engine: tuple[int, int] | None = None) -> None:
    if engine is not None:
        try:
            r = measure_engine(*engine)
        except OSError as exc:
            if not _unavailable(exc):
                raise
            # Not a failure of the run: this floor cannot be taken here (the JSON says why).
            print(json.dumps({"unavailable": str(exc)}) if as_json
                  else f"not measured here: {exc}")
            return
    else:
        r = measure(n, readers=readers)
    if as_json:
        print(json.dumps(r))
        return
    best, median = r["best_ms"] / 1000, r["median_ms"] / 1000
    n = r["sockets"]
    waiting = (f" to the connections of pid {r['engine_pid']} (their peers waiting)"
               if engine is not None else " (a reader process waiting)" if readers else "")
    print(f"{n} sends{waiting}: best {best * 1000:.1f} ms, median {median * 1000:.1f} ms per "
          "broadcast; "
          f"{best / n * 1e6:.2f} us per send() at best -> {best / n * 19000 * 1000:.0f} ms "
          f"for 19,000; the sender's CPU in the rounds: user {r['user_s']:.2f} s, system "
          f"{r['system_s']:.2f} s (pid {r['pid']})")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The floor under a broadcast (see the module "
                                     "docstring).")
    parser.add_argument("n", type=int, nargs="?", default=9000, help="connections (9,000)")
    parser.add_argument("--json", action="store_true", help="one JSON object, for the harness")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--readers", action="store_true",
                       help="a child process waits in epoll on the client sides")
    where.add_argument("--engine", metavar="PID:PORT", type=_pid_port,
                       help="over a running engine's own connections (N is ignored)")
    return parser.parse_args(argv)


def _pid_port(text: str) -> tuple[int, int]:
    pid, _, port = text.partition(":")
    return int(pid), int(port)


if __name__ == "__main__":
    args = _parse(sys.argv[1:])
    main(args.n, as_json=args.json, readers=args.readers, engine=args.engine)
