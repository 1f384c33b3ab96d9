"""Migrations apply once, in order, even when several workers start together."""

from __future__ import annotations

import asyncio

import asyncpg

from registry.db.migrate import available, migrate
from tests.support.postgres import fresh_database


async def test_concurrent_starts_apply_each_migration_once(pg_admin_dsn: str) -> None:
    dsn = await fresh_database(pg_admin_dsn, migrated=False)
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in available()]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in available()]
        assert await migrate(conns[0]) == []
    finally:
        for c in conns:
            await c.close()
