"""``LocalCluster``'s ports: a node's port stays its own across restarts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pubquiz_engine.cluster import free_port

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.skipif(not RANGE.exists(), reason="no ephemeral port range to stay out of")
def test_a_nodes_port_is_outside_the_ephemeral_range() -> None:
    """A restarting node rebinds its port; one from the ephemeral range may meanwhile be the
    local end of some outgoing connection (the rolling restart's EADDRINUSE)."""
    low, _high = (int(x) for x in RANGE.read_text().split())
    ports = {free_port() for _ in range(20)}
    assert all(1024 < port < low for port in ports), ports
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free, as promised
