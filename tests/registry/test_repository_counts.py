"""The repository listing's tag and manifest counts: exact after every kind of change,
however pushes, deletes, GC and folds interleave, and read without counting the rows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registry.db.migrate import migrate
from registry.db.repositories import SUMMARY_PAGE, fold_counts, summaries
from registry.gc import collect
from registry.oci import mediatypes as mt
from tests.support.oci import Image, push_image, push_manifest
from tests.support.served import Served
from tests.support.servers import LiveRegistry, live_registry, registry_config

Counts = dict[str, tuple[int, int]]


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    """One storage driver is enough: counting happens in the database."""
    config = registry_config(pg_dsn, tmp_path / "data", "filesystem", None)
    async with live_registry(config) as live:
        yield live


async def listed(http: aiohttp.ClientSession, zoll: LiveRegistry) -> Counts:
    async with http.get(f"{zoll.url}/api/v1/repositories?limit=1000") as r:
        assert r.status == 200
        body = await r.json()
    return {x["name"]: (x["tags"], x["manifests"]) for x in body["repositories"]}


async def counted(pool: asyncpg.Pool) -> Counts:
    """What the listing must say: the rows counted one by one."""
    rows = await pool.fetch(
        """SELECT r.name,
                  (SELECT count(*) FROM tags t WHERE t.repository_id = r.id) AS tags,
                  (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id) AS manifests
             FROM repositories r"""
    )
    return {r["name"]: (r["tags"], r["manifests"]) for r in rows}


async def exact(http: aiohttp.ClientSession, zoll: LiveRegistry, expected: Counts) -> None:
    """The listing says `expected`, with deltas pending and once they are folded."""
    pool = zoll.registry.pool
    assert await counted(pool) == expected
    assert await listed(http, zoll) == expected
    await fold_counts(pool)
    assert await pool.fetchval("SELECT count(*) FROM repository_count_deltas") == 0
    assert await listed(http, zoll) == expected


async def delete(http: aiohttp.ClientSession, zoll: LiveRegistry, name: str, ref: str) -> None:
    async with http.delete(f"{zoll.url}/v2/{name}/manifests/{ref}") as r:
        assert r.status == 202, await r.text()


async def test_counts_follow_pushes_moves_deletes_gc_and_repository_deletion(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    first, second, untagged = Image.random(), Image.random(), Image.random()
    await push_image(http, zoll.url, "app", first, "v1")
    await push_image(http, zoll.url, "app", second, "v1")  # moves v1: still one tag
    await push_image(http, zoll.url, "app", second, "stable")
    await push_image(http, zoll.url, "app", second, "stable")  # the same again: no change
    await push_image(http, zoll.url, "app", untagged, untagged.digest)
    await push_image(http, zoll.url, "other", first, "v1")
    await exact(http, zoll, {"app": (2, 3), "other": (1, 1)})

    await delete(http, zoll, "app", "stable")  # a tag
    await exact(http, zoll, {"app": (1, 3), "other": (1, 1)})
    await delete(http, zoll, "app", first.digest)  # a manifest no tag points at any more
    await exact(http, zoll, {"app": (1, 2), "other": (1, 1)})
    await delete(http, zoll, "app", second.digest)  # a manifest and, with it, its tag v1
    await exact(http, zoll, {"app": (0, 1), "other": (1, 1)})

    await push_image(http, zoll.url, "app", second, "v2")
    report = await collect(zoll.registry, grace=0)  # the untagged manifest goes
    assert report.manifests == 1
    await exact(http, zoll, {"app": (1, 1), "other": (1, 1)})

    # A referrer and an index with its child: more manifests, GC keeps them all.
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [second.descriptor()]}
    ).encode()
    r = await push_manifest(http, zoll.url, "app", "all", index, mt.OCI_INDEX)
    assert r.status == 201
    await exact(http, zoll, {"app": (2, 2), "other": (1, 1)})

    pool = zoll.registry.pool
    await push_image(http, zoll.url, "other", second, "v2")  # a delta left pending
    other = await pool.fetchval("SELECT id FROM repositories WHERE name = 'other'")
    await pool.execute("DELETE FROM repositories WHERE id = $1", other)  # cascades
    for table in ("repository_counts", "repository_count_deltas"):
        left = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE repository_id = $1",
            other,
        )
        assert left == 0, table
    await exact(http, zoll, {"app": (2, 2)})


async def test_concurrent_pushes_deletes_gc_and_folds_count_every_change_once(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    images = [Image.random(layers=1, size=64) for _ in range(4)]
    for image in images:  # each keeps a tag of its own: GC leaves them
        await push_image(http, zoll.url, "busy", image, image.digest[7:19])
    for _ in range(20):  # untagged: GC collects them while the tags below move
        doomed = Image.random(layers=1, size=64)
        await push_image(http, zoll.url, "busy", doomed, doomed.digest)
    pool = zoll.registry.pool
    pushing = True

    async def tag(k: int) -> None:
        image = images[k % len(images)]  # tags moving between the 4 images
        r = await push_manifest(
            http, zoll.url, "busy", f"t{k % 150}", image.manifest(), image.media_type
        )
        assert r.status == 201
        if k % 7 == 0:
            async with http.delete(f"{zoll.url}/v2/busy/manifests/t{k % 150}") as r:
                assert r.status in (202, 404)  # another task may have deleted it first

    async def pushes(start: int) -> None:
        for k in range(start, 400, 8):
            await tag(k)

    async def folds() -> int:
        rounds = 0
        while pushing:
            await fold_counts(pool, batch=5)  # small batches: many folds, several at once
            rounds += 1
            await asyncio.sleep(0)
        return rounds

    async def gc() -> int:
        collected = 0
        while pushing:
            collected += (await collect(zoll.registry, grace=0)).manifests
            await asyncio.sleep(0.05)
        return collected

    folders = [asyncio.create_task(folds()) for _ in range(3)]
    collector = asyncio.create_task(gc())
    try:
        await asyncio.gather(*(pushes(s) for s in range(8)))
    finally:
        pushing = False
        rounds = await asyncio.gather(*folders)
        collected = await collector
    assert min(rounds) > 5, rounds  # the folds really ran while the pushes did
    collected += (await collect(zoll.registry, grace=0)).manifests
    assert collected == 20
    expected = await counted(pool)
    assert expected["busy"][1] == 4 and 4 < expected["busy"][0] <= 154
    await exact(http, zoll, expected)


async def test_serve_workers_fold_the_deltas_of_pushes(pg_dsn: str, tmp_path: Path) -> None:
    env = {
        "ZOLL_DATABASE__DSN": pg_dsn,
        "ZOLL_STORAGE__DRIVER": "filesystem",
        "ZOLL_AUTH__ENABLED": "false",
        "ZOLL_PIPELINE__ENABLED": "false",
    }
    served = await asyncio.to_thread(Served, tmp_path / "data", "--workers", "2", env=env)
    try:
        async with aiohttp.ClientSession() as http:
            for k in range(3):
                await push_image(http, f"http://{served.host}", "app", Image.random(), f"v{k}")
        conn = await asyncpg.connect(pg_dsn)
        try:
            deadline = time.monotonic() + 20  # folds come every 5 s, jittered
            while await conn.fetchval("SELECT count(*) FROM repository_count_deltas"):
                assert time.monotonic() < deadline, "no worker folded the counts"
                await asyncio.sleep(0.2)
            folded = await conn.fetchrow("SELECT tags, manifests FROM repository_counts")
            assert tuple(folded) == (3, 3)
        finally:
            await conn.close()
    finally:
        assert await asyncio.to_thread(served.stop) == 0


async def listing_blocks(conn: asyncpg.Connection, sql: str) -> int:
    """Shared buffers (hit or read) one listing page touches."""
    found = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", None, 100)
    top = json.loads(found)[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


async def test_listing_reads_the_same_blocks_with_ten_or_thousands_of_tags(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("INSERT INTO repositories (name) VALUES ('big'), ('small')")
        await conn.execute(
            """INSERT INTO manifests (repository_id, digest, media_type, content, size)
               SELECT r.id, 'sha256:' || r.name, $1, '{}', 2 FROM repositories r""",
            mt.OCI_MANIFEST,
        )
        await conn.execute(
            """INSERT INTO tags (repository_id, name, manifest_digest)
               SELECT r.id, 't' || i, 'sha256:' || r.name
                 FROM repositories r, generate_series(1, 10) i"""
        )
        await conn.execute("VACUUM ANALYZE")
        await listing_blocks(conn, SUMMARY_PAGE)  # warm the catalogue caches
        few = await listing_blocks(conn, SUMMARY_PAGE)
        await conn.execute(
            """INSERT INTO tags (repository_id, name, manifest_digest)
               SELECT r.id, 'more' || i, 'sha256:big'
                 FROM repositories r, generate_series(1, 20000) i WHERE r.name = 'big'"""
        )
        await conn.execute("VACUUM ANALYZE")  # as well kept as it gets: index-only scans
        many = await listing_blocks(conn, SUMMARY_PAGE)
        assert many <= few + 2, (few, many)  # one more delta: the 20,000 tags read nothing
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        page = await summaries(pool, None, 100)
        assert [(r["name"], r["tags"], r["manifests"]) for r in page] == [
            ("big", 20010, 1),
            ("small", 10, 1),
        ]
        # Deleting the manifest deletes its 20,010 tags by cascade: one delta for those.
        deltas = await pool.fetchval("SELECT count(*) FROM repository_count_deltas")
        await pool.execute("DELETE FROM manifests WHERE digest = 'sha256:big'")
        more = await pool.fetchval("SELECT count(*) FROM repository_count_deltas") - deltas
        assert more == 2  # the manifest's and its tags'
        page = await summaries(pool, None, 100)
        assert [(r["name"], r["tags"], r["manifests"]) for r in page] == [
            ("big", 0, 0),
            ("small", 10, 1),
        ]
    finally:
        await pool.close()


async def test_migration_counts_what_was_there_before_it(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:  # back to the schema before 0840, with rows in it
        await conn.execute(
            """DROP TABLE repository_counts, repository_count_deltas;
               DROP FUNCTION repository_count_delta, repository_count_cleanup CASCADE;
               DELETE FROM schema_migrations WHERE version = 840;
               INSERT INTO repositories (name) VALUES ('a'), ('b'), ('empty');
               INSERT INTO manifests (repository_id, digest, media_type, content, size)
               SELECT r.id, 'sha256:' || i, 'x', '{}', 2
                 FROM repositories r, generate_series(1, 3) i WHERE r.name <> 'empty';
               INSERT INTO tags (repository_id, name, manifest_digest)
               SELECT r.id, 't' || i, 'sha256:1'
                 FROM repositories r, generate_series(1, 5) i WHERE r.name = 'a';"""
        )
        assert [m.version for m in await migrate(conn)] == [840]
        rows = await conn.fetch(
            """SELECT r.name, c.tags, c.manifests FROM repository_counts c
                 JOIN repositories r ON r.id = c.repository_id ORDER BY r.name"""
        )
        assert [tuple(r) for r in rows] == [("a", 5, 3), ("b", 0, 3), ("empty", 0, 0)]
    finally:
        await conn.close()
