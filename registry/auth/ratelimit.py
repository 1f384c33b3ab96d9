"""Token buckets against abuse: per principal and per source address, per worker process.

`/token` requests draw from a bucket per address and one per user name. Failed logins
draw from a second, small pair of buckets that refill slowly; once either is empty every
further login for that name or from that address is answered 429 with Retry-After until
it refills, correct password or not, so guessing proceeds at the refill rate at best.
Buckets live in memory: with N workers an address gets up to N times the budget (the
kernel spreads connections), which docs/auth.md states.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 20000
"""Buckets kept per limiter; the least recently used is dropped (it is full again by then
for any sane configuration, or the address is flooding and keeps its own fresh)."""


@dataclass
class TokenBucket:
    rate: float
    """Tokens added per second."""
    capacity: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float, amount: float = 1.0) -> float:
        """Take `amount`; 0.0 if granted, else the seconds until it would be."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate

    def wait(self, now: float) -> float:
        """Seconds until one token is available, without taking it."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class Limiter:
    """One bucket per key (an address, a user name), least recently used dropped first."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.capacity, self.capacity, self.clock())
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str) -> float:
        return self._bucket(key).take(self.clock())

    def wait(self, key: str) -> float:
        return self._bucket(key).wait(self.clock())


class RateLimited(Exception):
    """Too many requests; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float, what: str) -> None:
        super().__init__(what)
        self.retry_after = max(1, int(retry_after + 0.999))
        self.what = what


class LoginGuard:
    """The request and failed-login budgets of one worker process."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        failures: int,
        failure_refill: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = Limiter(per_second, burst, clock)
        self.failures = Limiter(1.0 / failure_refill, failures, clock)

    def token_request(self, address: str, name: str | None) -> None:
        """Count one /token request; RateLimited if the address or name is over budget."""
        for key in (f"a:{address}", f"u:{name}" if name else None):
            if key is not None:
                wait = self.requests.take(key)
                if wait:
                    raise RateLimited(wait, "too many token requests")

    def before_login(self, address: str, name: str) -> None:
        """RateLimited while the address or name has used up its failed logins."""
        wait = max(self.failures.wait(f"a:{address}"), self.failures.wait(f"u:{name}"))
        if wait:
            raise RateLimited(wait, "too many failed logins")

    def failed(self, address: str, name: str) -> None:
        self.failures.take(f"a:{address}")
        self.failures.take(f"u:{name}")
