"""Per-address limits: what counts as one client address (issue 20: IPv6 by its /64)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import trio
from engine_fixtures import engine_at
from hypothesis import given
from hypothesis import strategies as st

from pubquiz_engine.server.ratelimit import AddressLimiter, address_key


def test_ipv6_addresses_of_one_slash_64_share_a_key() -> None:
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"


def test_ipv4_and_other_addresses_keep_their_own_key() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4-mapped: the IPv4 client
    assert address_key("unix-socket") == "unix-socket"


def _parsed_key(address: str) -> str:
    """``address_key`` as it was before its IPv4 shortcut: every address parsed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@given(st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda ip: f"{ip}%eth0"),
    st.lists(st.sampled_from(["0", "00", "01", "1", "255", "256", "1e1", " 1", "١"]),
             min_size=3, max_size=5).map(".".join),
    st.text(alphabet="0123456789.:%abcdef ", max_size=20),
))
def test_the_ipv4_shortcut_keys_every_address_as_parsing_does(address: str) -> None:
    assert address_key(address) == _parsed_key(address)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_every_host_part_of_a_slash_64_is_one_client(network: int, host: int) -> None:
    address = str(ipaddress.IPv6Address((network << 64) | host))
    if ipaddress.IPv6Address(address).ipv4_mapped is None:
        assert address_key(address) == address_key(str(ipaddress.IPv6Address(network << 64)))


def test_the_join_limiter_counts_a_slash_64_as_one_address() -> None:
    limiter = AddressLimiter(rate=0.0, burst=3)
    taken = [limiter.take(f"2001:db8:0:1::{i:x}", now=0.0) for i in range(1, 6)]
    assert taken == [True, True, True, False, False]
    assert len(limiter) == 1
    # Another /64, and an IPv4 client, have their own buckets.
    assert limiter.take("2001:db8:0:2::1", now=0.0)
    assert limiter.take("192.0.2.1", now=0.0)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.sampled_from(["2001:db8:0:1::", "fe80::", "2a00:1450:4001:80b::"]))
def test_can_take_asks_the_bucket_take_charges(host: int, other: int, net: str) -> None:
    # The operator-key lockout asks ``can_take`` before it compares a key: it must see the
    # bucket that ``take`` charged for any host of the /64, or an IPv6 guesser is never
    # locked out (it was: ``can_take`` looked the bucket up under the bare address).
    base = int(ipaddress.IPv6Address(net))
    first = str(ipaddress.IPv6Address(base | host))
    second = str(ipaddress.IPv6Address(base | other))
    limiter = AddressLimiter(rate=0.0, burst=2)
    assert limiter.can_take(first, now=0.0)
    assert limiter.take(first, now=0.0) and limiter.take(second, now=0.0)
    assert not limiter.can_take(first, now=0.0)
    assert not limiter.can_take(second, now=0.0)
    assert limiter.take(first, now=0.0) == limiter.can_take(first, now=0.0) is False


async def test_the_connection_cap_counts_a_slash_64_as_one_address(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, max_connections_per_address=2) as (engine, _address):
            assert engine.admit("2001:db8:0:1::a")
            assert engine.admit("2001:db8:0:1::b")
            assert not engine.admit("2001:db8:0:1::c")  # a third host of the same /64
            assert engine.admit("2001:db8:0:2::a")
            engine.release("2001:db8:0:1::a")
            assert engine.admit("2001:db8:0:1::c")  # released by another host of the /64
