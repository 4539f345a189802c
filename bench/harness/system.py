"""The machine: its description, core pinning, file limits, and /proc readings of a process.

Rules this module keeps:

1. The engine gets one core and the load generator the others (``core_plan``), through
   ``taskset`` when it exists; the report always says which cores each side had, or that no
   pinning was possible.
2. Readings of another process come from ``/proc/<pid>`` only (RSS from ``status``, CPU time
   from ``stat``): no sampling library, nothing that could disturb the engine.
3. The private PostgreSQL database is created and dropped here, on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import attrs

CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_ADMIN_URL = os.environ.get("PUBQUIZ_BENCH_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine() -> dict[str, Any]:
    """nproc, the CPU model, RAM, kernel, Python, and the file limit, for the report."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "taskset": shutil.which("taskset") is not None,
    }


@attrs.frozen
class CorePlan:
    """Which cores the engine and the load generator run on (empty = not pinned)."""

    engine: tuple[int, ...]
    loadgen: tuple[int, ...]

    def prefix(self, cores: tuple[int, ...]) -> list[str]:
        """The ``taskset -c ...`` command prefix for ``cores`` (nothing if not pinned)."""
        if not cores:
            return []
        return ["taskset", "-c", ",".join(str(c) for c in cores)]

    def describe(self) -> dict[str, str]:
        def text(cores: tuple[int, ...]) -> str:
            return ",".join(str(c) for c in cores) if cores else "not pinned"
        return {"engine": text(self.engine), "loadgen": text(self.loadgen)}


def core_plan(pin: bool = True) -> CorePlan:
    """Engine on the first allowed core, load generator on the rest (one core: no pinning)."""
    cores = tuple(sorted(os.sched_getaffinity(0)))
    if not pin or len(cores) < 2 or shutil.which("taskset") is None:
        return CorePlan(engine=(), loadgen=())
    return CorePlan(engine=cores[:1], loadgen=cores[1:])


def loopback_addresses(count: int) -> list[str]:
    """``127.0.0.1 .. 127.0.0.<count>`` (Linux routes all of 127/8 to lo; at most 250)."""
    if not 1 <= count <= 250:
        raise ValueError(f"loopback address count must be 1..250, got {count}")
    return [f"127.0.0.{i}" for i in range(1, count + 1)]


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (entries of /proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU seconds ``pid`` has used, in all (``utime`` + ``stime`` in /proc/PID/stat) and the
    kernel's part (``stime``: system calls, and the network stack's work on its behalf), from
    one reading."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
        text = fh.read()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2:].split()
    user, system = int(fields[11]), int(fields[12])
    return (user + system) / CLK_TCK, system / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used."""
    return cpu_times(pid)[0]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat ``cpu`` line, idle and iowait
    left out): the difference over a window, less our own processes, is everyone else."""
    with open("/proc/stat", encoding="utf-8") as fh:
        fields = fh.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu_seconds() -> float:
    """CPU seconds this process has used (the coordinator: hosts and operator clients)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A fresh database ``pubquiz_bench_<random>`` on the local server; dropped afterwards."""
    import psycopg

    host = PG_ADMIN_URL.split("@")[-1].split("/")[0].split(":")[0]
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the bench only targets loopback; {PG_ADMIN_URL!r} is not")
    name = f"pubquiz_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rpartition("/")[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
