"""Exponential back-off with jitter, and the failure bookkeeping every Redis task shares.

Pure: no clock, no trio. The tasks ask ``failed(error)`` for the delay before their next try and
call ``succeeded()`` when a call goes through; ``FailureLog`` remembers what ``stats()`` reports
and logs only the transitions (down, back up), so an hour-long outage logs two lines, not
thousands.
"""

from __future__ import annotations

import logging
import random

import attrs


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.define
class Backoff:
    """Delays ``initial``, ``initial * factor``, ... capped at ``maximum``; each delay is then
    scaled by a random factor in ``[1 - jitter, 1]`` so that nodes which lost Redis together do
    not all come back in the same millisecond."""

    initial: float = attrs.field(validator=_positive)
    maximum: float = attrs.field(validator=_positive)
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = attrs.field(factory=random.Random)
    _attempt: int = attrs.field(default=0, init=False)

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self._attempt)
        # Stop growing the exponent once capped: it never overflows on a long outage.
        if base < self.maximum:
            self._attempt += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self._attempt = 0


@attrs.define
class FailureLog:
    """Counts failures, keeps the last error and whether Redis answered last time."""

    what: str  # names the task in log lines: "lease keeper", "snapshotter", ...
    logger: logging.Logger
    failures: int = 0
    last_error: str | None = None
    redis_up: bool = True

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.redis_up:
            self.logger.warning("%s: Redis call failed, retrying with back-off: %s",
                                self.what, self.last_error)
        else:
            self.logger.debug("%s: Redis still failing: %s", self.what, self.last_error)
        self.redis_up = False

    def succeeded(self) -> None:
        if not self.redis_up:
            self.logger.info("%s: Redis is back after %d failures", self.what, self.failures)
        self.redis_up = True
