"""Mirror sets in PostgreSQL: store a set, load it, name the job that resolves an entry.

Kept apart from `registry.mirror.jobs` (which loads the whole pipeline) so that the CLI
can queue work for the service without importing what the service runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from registry import audit
from registry.mirror.sets import MirrorSet
from registry.pipeline.jobs import BULK, JobQueue, Lane

__all__ = ["applied_at", "apply_and_queue", "apply_set", "entry_job", "entry_lane", "load_set"]


async def apply_set(pool: asyncpg.Pool, mirror_set: MirrorSet, sha256: str) -> list[str]:
    """Store a mirror set (replacing the earlier version) and make every entry due now."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO mirror_sets (name, document, sha256) VALUES ($1, $2, $3)
               ON CONFLICT (name) DO UPDATE SET document = EXCLUDED.document,
                   sha256 = EXCLUDED.sha256, applied_at = now()""",
            mirror_set.name,
            mirror_set.model_dump(mode="json"),
            sha256,
        )
        names = [m.name for m in mirror_set.mirrors]
        await conn.execute(
            "DELETE FROM mirror_entries WHERE set_name = $1 AND NOT (name = ANY($2::text[]))",
            mirror_set.name,
            names,
        )
        await conn.executemany(
            """INSERT INTO mirror_entries (set_name, name) VALUES ($1, $2)
               ON CONFLICT (set_name, name) DO UPDATE SET next_run_at = now()""",
            [(mirror_set.name, n) for n in names],
        )
        await audit.record(
            conn,
            "mirror_set.apply",
            target=mirror_set.name,
            detail={"sha256": sha256, "entries": names},
        )
    return names


async def load_set(pool: asyncpg.Pool, name: str) -> MirrorSet:
    document = await pool.fetchval("SELECT document FROM mirror_sets WHERE name = $1", name)
    if document is None:
        raise KeyError(f"no mirror set {name!r}")
    return MirrorSet.model_validate(document)


def entry_job(set_name: str, entry: str) -> tuple[str, str, dict[str, Any]]:
    """(kind, key, payload) of the job that resolves one mirror entry."""
    return "mirror-entry", f"mirror-entry:{set_name}/{entry}", {"set": set_name, "entry": entry}


def entry_lane(source: str) -> Lane:
    """Mirror work is bulk work; each upstream is a source that takes turns with the
    others (the images an entry finds, and their pipeline stages, inherit the lane)."""
    return Lane(BULK, f"mirror:{source}")


async def apply_and_queue(
    pool: asyncpg.Pool, mirror_set: MirrorSet, sha256: str, *, max_attempts: int = 5
) -> tuple[list[str], datetime]:
    """Store a set and queue every entry for the service's workers (each tried up to
    `max_attempts` times: `pipeline.max_attempts`); return the entry names and when the
    set was applied."""
    names = await apply_set(pool, mirror_set, sha256)
    jobs = JobQueue(pool, max_attempts=max_attempts)
    await jobs.enqueue_many(
        [entry_job(mirror_set.name, n) for n in names],
        lanes=[entry_lane(mirror_set.entry(n).source) for n in names],
    )
    return names, await applied_at(pool, mirror_set.name)


async def applied_at(pool: asyncpg.Pool, name: str) -> datetime:
    """When the set was last applied; KeyError if it never was."""
    found: datetime | None = await pool.fetchval(
        "SELECT applied_at FROM mirror_sets WHERE name = $1", name
    )
    if found is None:
        raise KeyError(f"no mirror set {name!r}")
    return found
