"""Repository rows: created on first push, listed by `_catalog`."""

from __future__ import annotations

import asyncpg

from registry.db.pool import Conn, Executor


async def ensure(conn: Conn, name: str) -> int:
    """The id of repository `name`, creating it if needed (inside the caller's transaction).
    An existing row is never updated, so concurrent callers never queue behind each other's
    transactions for it."""
    repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", name)
    if repo_id is None:
        repo_id = await conn.fetchval(
            """INSERT INTO repositories (name) VALUES ($1)
               ON CONFLICT (name) DO NOTHING RETURNING id""",
            name,
        )
    if repo_id is None:  # created by a transaction that committed meanwhile
        repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", name)
    return int(repo_id)


async def lookup(conn: Executor, name: str) -> int | None:
    repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", name)
    return None if repo_id is None else int(repo_id)


CATALOG_PAGE = """
    SELECT r.name FROM repositories r
     WHERE r.name > coalesce($1::text, '')  -- an index condition in any plan
       AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
     ORDER BY r.name LIMIT $2"""


async def page(pool: asyncpg.Pool, last: str | None, limit: int) -> list[str]:
    """Repository names in lexical order after `last` that hold at least one manifest."""
    rows = await pool.fetch(
        CATALOG_PAGE,
        last,
        limit,
    )
    return [r["name"] for r in rows]


SUMMARY_PAGE = """
    SELECT r.name, r.created_at,
           (coalesce(c.tags, 0) + coalesce(d.tags, 0))::bigint AS tags,
           (coalesce(c.manifests, 0) + coalesce(d.manifests, 0))::bigint AS manifests
      FROM (SELECT id, name, created_at FROM repositories
             WHERE name > coalesce($1::text, '')
             ORDER BY name LIMIT $2) r
      LEFT JOIN repository_counts c ON c.repository_id = r.id
      LEFT JOIN LATERAL (SELECT sum(x.tags) AS tags, sum(x.manifests) AS manifests
                           FROM repository_count_deltas x
                          WHERE x.repository_id = r.id) d ON true
     ORDER BY r.name"""
"""A page of repositories with their counts: the folded row plus the deltas not folded yet
(migration 0840), so one index probe each instead of counting the repository's rows."""


async def summaries(pool: asyncpg.Pool, after: str | None, limit: int) -> list[asyncpg.Record]:
    """Repositories after `after` with their counts, for the API."""
    return await pool.fetch(SUMMARY_PAGE, after, limit)


FOLD_INTERVAL = 5.0
"""Seconds between folds in each worker: what a listing adds up is a few seconds of pushes."""

FOLD_BATCH = 10_000
"""Deltas one fold moves in one transaction, so that a backlog (after a bulk load, or
workers that were down) is folded in short transactions."""

FOLD_COUNTS = """
    WITH moved AS (
        DELETE FROM repository_count_deltas
         WHERE id IN (SELECT id FROM repository_count_deltas
                       ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING repository_id, tags, manifests
    ), summed AS (
        SELECT repository_id, sum(tags)::bigint AS tags, sum(manifests)::bigint AS manifests,
               count(*) AS deltas
          FROM moved GROUP BY repository_id
    ), folded AS (
        INSERT INTO repository_counts AS c (repository_id, tags, manifests)
        SELECT repository_id, tags, manifests FROM summed ORDER BY repository_id
        ON CONFLICT (repository_id) DO UPDATE
            SET tags = c.tags + EXCLUDED.tags, manifests = c.manifests + EXCLUDED.manifests
    )
    SELECT coalesce(sum(deltas), 0)::bigint FROM summed"""
"""Moves up to $1 deltas into the folded counts, atomically (one statement: a listing sees
them either pending or folded, never both or neither). Folds running at once in several
workers take disjoint deltas (SKIP LOCKED) and update the counts rows in repository order,
so they neither count a delta twice nor deadlock; pushes only insert deltas, and never
wait for a fold."""


async def fold_counts(pool: asyncpg.Pool, batch: int = FOLD_BATCH) -> int:
    """Fold pending count deltas until fewer than a batch are left; how many were folded."""
    folded = 0
    while True:
        moved = int(await pool.fetchval(FOLD_COUNTS, batch))
        folded += moved
        if moved < batch:
            return folded
