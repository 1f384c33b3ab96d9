"""Failed-login back-off, shared by every worker and instance through PostgreSQL.

What is throttled is guessing, not use: a client that asks `/token` before every request
with valid credentials is never slowed down (a verified credential is remembered per
worker, and successful logins write nothing). Each failed login counts against the source
address and the account name. Once either has `failed_logins` failures, logins for that
name or from that address are refused with 429 and Retry-After for `lockout` seconds,
right password or not; every further failure after a lockout doubles it, up to
`max_lockout`. Failures are forgotten `failure_memory` seconds after the last one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg


class RateLimited(Exception):
    """Too many requests; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float, what: str) -> None:
        super().__init__(what)
        self.retry_after = max(1, int(retry_after + 0.999))
        self.what = what


@dataclass(frozen=True, slots=True)
class BackOff:
    failed_logins: int
    lockout: float
    max_lockout: float
    failure_memory: float


_CHECK = """
SELECT extract(epoch FROM max(blocked_until) - now())::float8
FROM login_failures WHERE key = ANY($1::text[]) AND blocked_until > now()
"""

_FAIL = """
INSERT INTO login_failures AS f (key, failures, last_failure, blocked_until)
SELECT k, 1, now(), CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END
FROM unnest($1::text[]) AS k
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN f.last_failure < now() - make_interval(secs => $5) THEN 1
                    ELSE f.failures + 1 END,
    last_failure = now(),
    blocked_until = CASE
        WHEN f.last_failure < now() - make_interval(secs => $5) THEN
            CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END
        WHEN f.failures + 1 >= $2 THEN
            now() + make_interval(secs => least($4, $3 * power(2, f.failures + 1 - $2)))
        ELSE f.blocked_until END
"""

_FORGET = "DELETE FROM login_failures WHERE last_failure < now() - make_interval(secs => $1)"


class LoginThrottle:
    """The failed-login counters of one database, for every process that uses it."""

    def __init__(self, pool: asyncpg.Pool, backoff: BackOff) -> None:
        self.pool = pool
        self.backoff = backoff

    @staticmethod
    def _keys(address: str, name: str) -> list[str]:
        return [f"a:{address}", f"u:{name}"]

    async def before_login(self, address: str, name: str) -> None:
        """RateLimited while the address or the name is locked out."""
        wait = await self.pool.fetchval(_CHECK, self._keys(address, name))
        if wait is not None and wait > 0:
            raise RateLimited(wait, "too many failed logins")

    async def failed(self, address: str, name: str) -> None:
        """Count one failed login against the address and the name."""
        b = self.backoff
        async with self.pool.acquire() as conn:
            await conn.execute(
                _FAIL,
                self._keys(address, name),
                b.failed_logins,
                float(b.lockout),
                float(b.max_lockout),
                float(b.failure_memory),
            )
            if random.random() < 0.02:
                await conn.execute(_FORGET, float(b.failure_memory))
