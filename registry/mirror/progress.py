"""How far the service has come with mirror work: read by `zoll mirror` and by the API.

"Since" is a database timestamp taken when a set was applied: every job created after it
(the entries, the images they found, the pipeline stages of those images) is part of
that application's work, so nothing pending since then means the set is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg

MIRROR_KINDS = ["mirror-entry", "mirror-image"]


async def jobs_since(pool: asyncpg.Pool, since: datetime) -> tuple[int, int]:
    """(pending, finished) jobs created since `since` (one small count)."""
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE state IN ('queued', 'running')) AS pending,
                  count(*) FILTER (WHERE state IN ('done', 'failed', 'cancelled')) AS done
           FROM jobs WHERE created_at >= $1""",
        since,
    )
    assert row is not None
    return int(row["pending"]), int(row["done"])


async def follow(
    pool: asyncpg.Pool, since: datetime, poll: float, until: float | None = None
) -> AsyncIterator[tuple[int, int]]:
    """`jobs_since` now and every `poll` seconds until nothing is pending, or until the
    monotonic clock passes `until`: what a waiting follower (CLI or API) shows."""
    while True:
        pending, done = await jobs_since(pool, since)
        yield pending, done
        if not pending or (until is not None and time.monotonic() >= until):
            return
        await asyncio.sleep(poll)


async def set_images(pool: asyncpg.Pool, set_name: str) -> list[dict[str, Any]]:
    """The images a set's entries resolved to, with their pipeline state and reasons."""
    rows = await pool.fetch(
        """SELECT i.entry, i.reference, i.repository, i.digest, s.state, s.reasons
           FROM mirror_images i
           LEFT JOIN repositories r ON r.name = i.repository
           LEFT JOIN image_status s ON s.repository_id = r.id AND s.digest = i.digest
           WHERE i.set_name = $1 ORDER BY i.entry, i.reference""",
        set_name,
    )
    return [dict(r) for r in rows]


async def failures_since(pool: asyncpg.Pool, since: datetime) -> list[dict[str, Any]]:
    """Mirror jobs created since `since` that gave up: what they were for, and why."""
    rows = await pool.fetch(
        """SELECT payload, last_error FROM jobs
           WHERE created_at >= $1 AND state = 'failed' AND kind = ANY($2::text[])""",
        since,
        MIRROR_KINDS,
    )
    return [{"job": r["payload"], "error": r["last_error"]} for r in rows]


async def entries(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every mirror entry with its last and next run, last error and image count."""
    rows = await pool.fetch(
        """SELECT e.set_name, e.name, e.last_run_at, e.next_run_at, e.last_error,
                  e.last_result, (SELECT count(*) FROM mirror_images i
                                   WHERE i.set_name = e.set_name AND i.entry = e.name) AS images
           FROM mirror_entries e ORDER BY e.set_name, e.name"""
    )
    return [dict(r) for r in rows]


async def pending_mirror_jobs(pool: asyncpg.Pool) -> dict[str, int]:
    """`kind:state` → count of mirror jobs queued, running or failed."""
    rows = await pool.fetch(
        """SELECT kind, state, count(*) AS n FROM jobs
           WHERE kind = ANY($1::text[]) AND state IN ('queued', 'running', 'failed')
           GROUP BY 1, 2""",
        MIRROR_KINDS,
    )
    return {f"{r['kind']}:{r['state']}": int(r["n"]) for r in rows}
