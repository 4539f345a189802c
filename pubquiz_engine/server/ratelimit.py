"""Token buckets for message floods, flood strikes, join-code and operator-key guessing.

A bucket holds at most ``burst`` tokens and refills at ``rate`` per second; an action that finds
a token takes it. Time is passed in (``now``), so the buckets are tested without a clock. The
per-address table forgets idle addresses so a scan from many addresses cannot grow it forever.

Per-address limits count an IPv6 client by its /64 (``address_key``): one subscriber line or
cloud instance usually holds a whole /64, so keying on the full address would give it 2^64
separate allowances.
"""

from __future__ import annotations

import ipaddress

import attrs

#: The IPv6 prefix length that stands for one client in per-address limits.
IPV6_CLIENT_PREFIX = 64


def address_key(address: str) -> str:
    """The key a client address is limited under: an IPv6 address's /64 network (an
    IPv4-mapped IPv6 address counts as its IPv4 address), anything else unchanged."""
    if ":" not in address and "%" not in address:
        # Not IPv6. An IPv4 address prints back as given (``ipaddress`` accepts only the
        # canonical dotted quad), anything else is returned as given: skip the parse, which
        # ran three times per connection (admit, join limiter, release).
        return address
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone ("%eth0") is not the host
    except ValueError:
        return address  # not an IP address (a Unix socket path, a test's label): as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(ip)


@attrs.define
class TokenBucket:
    rate: float
    burst: float
    tokens: float = attrs.field()
    stamp: float = 0.0

    @tokens.default
    def _full(self) -> float:
        return self.burst

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are that many (after refilling up to ``now``)."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def can_take(self, now: float, cost: float = 1.0) -> bool:
        """Whether ``take(now, cost)`` would succeed (nothing is taken)."""
        return min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate) >= cost

    def full_at(self, now: float) -> bool:
        """Whether the bucket would be full at ``now`` (nothing to remember about it)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@attrs.define
class AddressLimiter:
    """One bucket per client (``address_key``: IPv6 by /64), pruned of full (idle) buckets as
    it grows."""

    rate: float
    burst: float
    max_entries: int = 100_000
    _buckets: dict[str, TokenBucket] = attrs.field(factory=dict)

    def take(self, address: str, now: float) -> bool:
        address = address_key(address)
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_entries:
                self._prune(now)
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, stamp=now)
        return bucket.take(now)

    def can_take(self, address: str, now: float) -> bool:
        """Whether ``take(address, now)`` would succeed (nothing is taken or remembered)."""
        bucket = self._buckets.get(address_key(address))
        return bucket is None or bucket.can_take(now)

    def wait_time(self, address: str, now: float) -> float:
        """Seconds until ``take(address, ...)`` can succeed (0 when it can now)."""
        bucket = self._buckets.get(address_key(address))
        if bucket is None or bucket.can_take(now):
            return 0.0
        held = bucket.tokens + max(0.0, now - bucket.stamp) * bucket.rate
        return (1.0 - held) / bucket.rate

    def _prune(self, now: float) -> None:
        for address in [a for a, b in self._buckets.items() if b.full_at(now)]:
            del self._buckets[address]
        if len(self._buckets) >= self.max_entries:  # all busy: forget the oldest half
            for address in list(self._buckets)[: self.max_entries // 2]:
                del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)
