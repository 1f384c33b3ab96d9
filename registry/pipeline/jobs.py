"""Durable jobs in PostgreSQL: survive restarts, are retried, never run twice at once.

Enqueueing is idempotent by key (a partial unique index over queued and running jobs).
Workers claim with `FOR UPDATE SKIP LOCKED` and hold a lease; a worker that dies stops
renewing it, and the job is queued again once the lease runs out. Failures are retried
with exponential backoff up to `max_attempts`, then the job is `failed` with its error.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

NOTIFY_CHANNEL = "zoll_jobs"


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


class RetryLater(Exception):
    """Not a failure: the job's inputs are not ready yet; try again after `delay` seconds
    without counting an attempt."""

    def __init__(self, reason: str, delay: float = 5.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Permanent(Exception):
    """A failure retrying cannot fix (bad input, a refused upstream): fail the job now."""


class JobQueue:
    def __init__(self, pool: asyncpg.Pool, *, lease_seconds: float = 600, max_attempts: int = 5):
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    async def enqueue(
        self, kind: str, key: str, payload: dict[str, Any], *, delay: float = 0
    ) -> int | None:
        """Queue a job unless one with the same key is queued or running; return its id."""
        job_id = await self.pool.fetchval(
            """WITH queued AS (
                 INSERT INTO jobs (kind, key, payload, max_attempts, run_after)
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
                 ON CONFLICT (key) WHERE state IN ('queued', 'running') DO NOTHING
                 RETURNING id)
               SELECT id, pg_notify($6, $1) FROM queued""",
            kind,
            key,
            payload,
            self.max_attempts,
            delay,
            NOTIFY_CHANNEL,
        )
        return None if job_id is None else int(job_id)

    async def claim(self, worker: str, kinds: list[str]) -> Job | None:
        row = await self.pool.fetchrow(
            """UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $1,
                      lease_until = now() + make_interval(secs => $3), updated_at = now(),
                      started_at = now()
               WHERE id = (SELECT id FROM jobs
                            WHERE state = 'queued' AND run_after <= now() AND kind = ANY($2)
                            ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
               RETURNING id, kind, key, payload, attempts, max_attempts""",
            worker,
            kinds,
            self.lease_seconds,
        )
        if row is None:
            return None
        return Job(
            row["id"], row["kind"], row["key"], row["payload"], row["attempts"], row["max_attempts"]
        )

    async def extend(self, job: Job) -> None:
        await self.pool.execute(
            """UPDATE jobs SET lease_until = now() + make_interval(secs => $2)
               WHERE id = $1 AND state = 'running'""",
            job.id,
            self.lease_seconds,
        )

    async def complete(self, job: Job, result: dict[str, Any] | None = None) -> None:
        await self.pool.execute(
            """UPDATE jobs SET state = 'done', result = $2, lease_until = NULL,
                      last_error = NULL, updated_at = now() WHERE id = $1""",
            job.id,
            result,
        )

    async def fail(self, job: Job, error: str, *, permanent: bool = False) -> bool:
        """Record a failure; True if the job will be retried."""
        retry = not permanent and job.attempts < job.max_attempts
        backoff = min(600.0, 2.0**job.attempts) * random.uniform(0.8, 1.2)
        await self.pool.execute(
            """UPDATE jobs SET state = $2, last_error = $3, lease_until = NULL,
                      run_after = now() + make_interval(secs => $4), updated_at = now()
               WHERE id = $1""",
            job.id,
            "queued" if retry else "failed",
            error[:4000],
            backoff,
        )
        return retry

    async def postpone(self, job: Job, delay: float, reason: str) -> None:
        """Queue again later without spending an attempt (inputs not ready yet)."""
        await self.pool.execute(
            """UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL,
                      last_error = $3, run_after = now() + make_interval(secs => $2),
                      updated_at = now() WHERE id = $1""",
            job.id,
            delay,
            reason[:4000],
        )

    async def requeue_expired(self) -> int:
        """Jobs whose worker died: queue them again (the attempt already counted)."""
        status = await self.pool.execute(
            """UPDATE jobs SET state = CASE WHEN attempts < max_attempts
                                            THEN 'queued' ELSE 'failed' END,
                      last_error = coalesce(last_error, 'worker lost its lease'),
                      lease_until = NULL, updated_at = now()
               WHERE state = 'running' AND lease_until < now()"""
        )
        return int(status.split()[-1])

    async def requeue_orphans(self, host: str, alive: Callable[[int], bool]) -> int:
        """At start: jobs running under a process of this host that no longer exists (the
        service was killed) are queued again at once instead of waiting for their lease."""
        rows = await self.pool.fetch(
            "SELECT id, worker FROM jobs WHERE state = 'running' AND starts_with(worker, $1)",
            f"{host}:",
        )
        dead = []
        for row in rows:
            parts = row["worker"].split(":")
            if len(parts) >= 2 and parts[1].isdigit() and not alive(int(parts[1])):
                dead.append(row["id"])
        if not dead:
            return 0
        status = await self.pool.execute(
            """UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = now(),
                      last_error = coalesce(last_error, 'worker process died')
               WHERE id = ANY($1::bigint[]) AND state = 'running'""",
            dead,
        )
        return int(status.split()[-1])

    async def counts(self) -> dict[str, dict[str, int]]:
        rows = await self.pool.fetch("SELECT kind, state, count(*) AS n FROM jobs GROUP BY 1, 2")
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["kind"], {})[r["state"]] = int(r["n"])
        return out
