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


async def summaries(pool: asyncpg.Pool, after: str | None, limit: int) -> list[asyncpg.Record]:
    """Repositories after `after` with their counts, for the API."""
    return await pool.fetch(
        """SELECT r.name, r.created_at,
                  (SELECT count(*) FROM tags t WHERE t.repository_id = r.id) AS tags,
                  (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id) AS manifests
           FROM repositories r WHERE r.name > coalesce($1::text, '')
           ORDER BY r.name LIMIT $2""",
        after,
        limit,
    )
