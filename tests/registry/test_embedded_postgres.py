"""The embedded PostgreSQL lets in as many clients as `zoll serve` may open: four workers,
each with the registry's pool and the pipeline's, need more than PostgreSQL's default 100."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from registry.config import load_config
from registry.embedded.postgres import EmbeddedPostgres


async def _max_connections(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


async def test_embedded_postgres_is_sized_for_the_workers(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"http": {"workers": 4}})
    needed = config.connections_needed()
    assert needed > 100  # 4 × (20 + 10 + 1) + 12

    server = EmbeddedPostgres(tmp_path / "postgres")
    dsn = await asyncio.to_thread(server.start, needed)
    try:
        assert await _max_connections(dsn) == needed
        # More clients at once than PostgreSQL's default of 100 allows all get in.
        held = [await asyncpg.connect(dsn) for _ in range(needed - 20)]
        for conn in held:
            await conn.close()
    finally:
        await asyncio.to_thread(server.stop)

    # A later start with fewer workers leaves the limit where it is.
    again = EmbeddedPostgres(tmp_path / "postgres")
    dsn = await asyncio.to_thread(again.start, 40)
    try:
        assert await _max_connections(dsn) == needed
    finally:
        await asyncio.to_thread(again.stop)


def test_connections_needed_counts_the_pipeline_pool_only_when_it_exists() -> None:
    relaxed = load_config(environ={}, overrides={"http": {"workers": 2}})
    strict = load_config(
        environ={}, overrides={"http": {"workers": 2}, "pipeline": {"synchronous_commit": True}}
    )
    assert relaxed.pipeline_pool_max == 10  # 4 per job slot × 2 slots + 2
    assert relaxed.connections_needed() - strict.connections_needed() == 2 * 10
