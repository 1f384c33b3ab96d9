"""Which commits wait for the disk: pushes and the transparency log always; the pipeline's
own work only with `pipeline.synchronous_commit`, and whatever the API shows is flushed
before it is sent (docs/pipeline.md, "Durability")."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg

from registry.audit import Change, record_all
from tests.support.servers import live_registry, registry_config


async def _setting(pool: asyncpg.Pool) -> str:
    return str(await pool.fetchval("SHOW synchronous_commit"))


async def _next_xid(pool: asyncpg.Pool) -> int:
    """The id the next writing transaction gets (reading it assigns none)."""
    return int(await pool.fetchval("SELECT txid_snapshot_xmax(txid_current_snapshot())"))


async def test_pipeline_work_commits_without_waiting_but_pushes_and_the_log_wait(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = registry_config(pg_dsn, tmp_path / "data", "filesystem", None)
    async with live_registry(config) as zoll:
        svc = zoll.services
        assert svc.config.relaxed_pipeline
        assert await _setting(svc.registry.pool) == "off"  # copies, stages, jobs
        assert await _setting(zoll.registry.pool) == "on"  # pushes and the API
        assert await _setting(svc.log.pool) == "on"  # nothing logged is taken back
        assert svc.registry.driver is zoll.registry.driver

        # The pipeline records something (as a mirror copy would) ...
        async with svc.registry.pool.acquire() as conn, conn.transaction():
            await record_all(conn, [Change("blob.link", "durable/app", "sha256:" + "0" * 64)])
        written = await zoll.registry.pool.fetchval("SELECT pg_current_wal_insert_lsn()")
        before = await _next_xid(zoll.registry.pool)
        # ... and an auditor reads the log: the answer comes after a commit that waited
        # for the disk, which flushes the pipeline's commit with it.
        async with http.get(f"{zoll.url}/api/v1/audit?repository=durable") as r:
            assert r.status == 200, await r.text()
            assert [e["action"] for e in (await r.json())["events"]] == ["blob.link"]
        assert await _next_xid(zoll.registry.pool) > before
        flushed = await zoll.registry.pool.fetchval("SELECT pg_current_wal_flush_lsn()")
        assert flushed >= written


async def test_synchronous_commit_makes_the_pipeline_wait_like_pushes(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = registry_config(
        pg_dsn, tmp_path / "data", "filesystem", None, pipeline={"synchronous_commit": True}
    )
    async with live_registry(config) as zoll:
        svc = zoll.services
        assert not svc.config.relaxed_pipeline
        assert svc.registry.pool is zoll.registry.pool
        assert await _setting(svc.registry.pool) == "on"
        # Nothing to flush, so the answer commits nothing. A background write of the
        # service may take an xid meanwhile: one of a few tries must show none taken.
        unchanged = []
        for _ in range(3):
            before = await _next_xid(zoll.registry.pool)
            async with http.get(f"{zoll.url}/api/v1/audit") as r:
                assert r.status == 200
            unchanged.append(await _next_xid(zoll.registry.pool) == before)
        assert any(unchanged)
