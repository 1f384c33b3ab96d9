"""Garbage collection removes what nothing references, and never what a push still needs."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Sequence

import aiohttp
import asyncpg
import pytest

from registry.db import blobs as blob_rows
from registry.gc import collect
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.storage.base import content_key
from tests.support.oci import Image, push_blob, push_image, push_manifest, sha256
from tests.support.servers import LiveRegistry


async def nothing() -> None:
    pass


async def stored_keys(zoll: LiveRegistry) -> set[str]:
    return {o.key async for o in zoll.registry.driver.list_blobs()}


async def readable(zoll: LiveRegistry, http: aiohttp.ClientSession, name: str, digest: str) -> bool:
    async with http.get(f"{zoll.url}/v2/{name}/blobs/{digest}") as r:
        return r.status == 200 and sha256(await r.read()) == digest


async def test_collects_untagged_manifests_and_unreferenced_blobs(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    kept = Image.random()
    await push_image(http, zoll.url, "app", kept, "v1")
    dropped = Image.random()
    dropped.layers.append(kept.layers[0])  # shares a layer with the kept image
    await push_image(http, zoll.url, "app", dropped, dropped.digest)
    signature = b"signature bytes"
    await push_blob(http, zoll.url, "app", signature)
    await push_blob(http, zoll.url, "app", b"{}")
    referrer = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(b"{}"), "size": 2},
            "layers": [
                {"mediaType": "text/plain", "digest": sha256(signature), "size": len(signature)}
            ],
            "subject": kept.descriptor(),
        }
    ).encode()
    assert (
        await push_manifest(http, zoll.url, "app", sha256(referrer), referrer, mt.OCI_MANIFEST)
    ).status == 201
    stray = await push_blob(http, zoll.url, "app", os.urandom(1000))

    report = await collect(zoll.registry, grace=0)

    assert report.manifests == 1
    assert report.blobs == 4  # dropped's config and its two own layers, and the stray blob
    async with http.get(f"{zoll.url}/v2/app/manifests/{dropped.digest}") as r:
        assert r.status == 404
    for blob in (kept.config, *kept.layers, signature):
        assert await readable(zoll, http, "app", sha256(blob))
    async with http.get(f"{zoll.url}/v2/app/manifests/{sha256(referrer)}") as r:
        assert r.status == 200
    for digest in (stray, sha256(dropped.config), *map(sha256, dropped.layers[:2])):
        assert not await readable(zoll, http, "app", digest)
    remaining = await zoll.registry.pool.fetchval("SELECT count(*) FROM blobs")
    assert len(await stored_keys(zoll)) == remaining == 5


async def test_grace_period_protects_recent_content(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    image = Image.random()
    await push_image(http, zoll.url, "app", image, image.digest)  # untagged
    await push_blob(http, zoll.url, "app", b"pushed, manifest still to come")
    report = await collect(zoll.registry, grace=3600)
    assert (report.manifests, report.links, report.blobs) == (0, 0, 0)
    assert await readable(zoll, http, "app", sha256(b"pushed, manifest still to come"))


async def test_orphaned_storage_and_abandoned_uploads_are_swept(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    driver = zoll.registry.driver
    pool = zoll.registry.pool
    # A crash after storing bytes but before recording them leaves an object with no row
    # (and the write, recorded before it).
    data = os.urandom(2048)
    state = await driver.begin_upload("crashed-upload-1")
    writer = await driver.resume_upload("crashed-upload-1", state, 0)
    await writer.write([data])
    await blob_rows.start_writes(pool, [writer.destination(Digest.parse(sha256(data)))])
    await writer.commit(Digest.parse(sha256(data)))
    # The same for content the service stores whole from memory (no upload session).
    made = os.urandom(512)
    await blob_rows.start_writes(pool, [content_key(Digest.parse(sha256(made)))])
    await driver.put(Digest.parse(sha256(made)), made)
    # And an upload whose request died leaves data with no session.
    state = await driver.begin_upload("abandoned-upload-2")
    writer = await driver.resume_upload("abandoned-upload-2", state, 0)
    await writer.write([b"half"])
    await writer.suspend()
    # A live session is left alone.
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/") as r:
        live = f"{zoll.url}{r.headers['Location']}"
    async with http.patch(live, data=b"still coming") as r:
        live = f"{zoll.url}{r.headers['Location']}"

    report = await collect(zoll.registry, grace=0, deep=False)

    assert report.orphaned_objects >= 3
    assert await stored_keys(zoll) == set()
    assert await pool.fetchval("SELECT count(*) FROM storage_writes") == 0
    uploads = {u async for u, _ in driver.list_uploads()}
    assert "abandoned-upload-2" not in uploads
    async with http.put(f"{live}?digest={sha256(b'still coming')}") as r:
        assert r.status == 201


async def test_a_blob_stored_by_a_transaction_that_failed_is_collected(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """The database connection dies after the bytes are stored, before their row is
    committed: the push fails, and the next collection (which does not list the store)
    removes the object its recorded write names."""
    pool = zoll.registry.pool
    data = os.urandom(3000)
    digest = Digest.parse(sha256(data))

    async def store_then_lose_the_database() -> str:
        key = await zoll.registry.driver.put(digest, data)
        await pool.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = current_database() AND state = 'idle in transaction'"""
        )
        return key

    upload = blob_rows.Verified(
        digest, len(data), content_key(digest), store_then_lose_the_database, nothing
    )
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await blob_rows.finalize_many(pool, "app", [upload])
    assert await zoll.registry.driver.stat(content_key(digest)) == len(data)
    assert not await readable(zoll, http, "app", str(digest))

    report = await collect(zoll.registry, grace=0, deep=False)

    assert report.orphaned_objects == 1 and not report.deep
    assert await zoll.registry.driver.stat(content_key(digest)) is None
    assert await pool.fetchval("SELECT count(*) FROM storage_writes") == 0
    # The client's retry stores it for good.
    await push_blob(http, zoll.url, "app", data)
    assert await readable(zoll, http, "app", str(digest))


async def test_a_collection_that_loses_the_database_after_deleting_keeps_blobs_pushable(
    zoll: LiveRegistry, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC's database connections die right after the store deleted a batch of blobs:
    no row may outlive its bytes. Pushing the same bytes again must store them anew
    (not link a row whose object is gone), and the next collection settles the rest."""
    again, gone = os.urandom(2000), os.urandom(2500)
    for data in (again, gone):
        await push_blob(http, zoll.url, "app", data)  # never referenced: collected
    real_delete = zoll.registry.driver.delete_many

    async def delete_then_lose_the_database(keys: Sequence[str]) -> dict[str, str]:
        failed = await real_delete(keys)
        # Every session holding an advisory lock: the collection's and the digests'.
        await zoll.registry.pool.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_locks
                WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"""
        )
        return failed

    monkeypatch.setattr(zoll.registry.driver, "delete_many", delete_then_lose_the_database)
    lost = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
    with pytest.raises(lost):  # whichever the moment of the loss gives
        await collect(zoll.registry, grace=0, deep=False)
    monkeypatch.setattr(zoll.registry.driver, "delete_many", real_delete)
    for data in (again, gone):
        assert await zoll.registry.driver.stat(content_key(Digest.parse(sha256(data)))) is None

    await push_blob(http, zoll.url, "app", again)
    assert await readable(zoll, http, "app", sha256(again))

    report = await collect(zoll.registry, grace=3600, deep=False)
    assert not report.skipped
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM storage_writes") == 0
    rows = await zoll.registry.pool.fetch("SELECT digest FROM blobs")
    assert {r["digest"] for r in rows} == {sha256(again)}
    assert await readable(zoll, http, "app", sha256(again))


async def test_only_a_deep_pass_lists_the_store(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """Objects nothing records (left before writes were recorded) are found by listing
    the store: the first collection does that, then one every gc.deep_sweep_interval."""
    kept = Image.random()
    await push_image(http, zoll.url, "app", kept, "v1")
    made = os.urandom(512)
    await zoll.registry.driver.put(Digest.parse(sha256(made)), made)
    key = content_key(Digest.parse(sha256(made)))

    first = await collect(zoll.registry, grace=3600)
    assert first.deep and first.orphaned_objects == 0  # younger than the grace period
    assert await zoll.registry.driver.stat(key) == len(made)
    second = await collect(zoll.registry, grace=0)
    assert not second.deep and second.orphaned_objects == 0
    assert await zoll.registry.driver.stat(key) == len(made)
    deep = await collect(zoll.registry, grace=0, deep=True)
    assert deep.deep and deep.orphaned_objects == 1
    assert await zoll.registry.driver.stat(key) is None
    for blob in (kept.config, *kept.layers):
        assert await readable(zoll, http, "app", sha256(blob))


@pytest.mark.parametrize("driver", ["filesystem"])
async def test_a_collection_rests_as_long_as_its_duty_cycle_says(
    zoll: LiveRegistry, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc.duty_cycle 0.5: a collection spends about as long resting between batches as
    working (pushes and pulls get the store and the database meanwhile); 1: never rests."""
    monkeypatch.setattr("registry.gc.BATCH", 2)
    monkeypatch.setattr("registry.gc.BLOB_BATCH", 2)
    monkeypatch.setattr("registry.gc.REST_AFTER", 0.0)  # rest after every batch

    def with_duty(duty: float) -> None:
        gc = zoll.registry.config.gc.model_copy(update={"duty_cycle": duty})
        monkeypatch.setattr(
            zoll.registry, "config", zoll.registry.config.model_copy(update={"gc": gc})
        )

    for duty in (0.5, 1.0):
        strays = [await push_blob(http, zoll.url, "paced", os.urandom(200)) for _ in range(12)]
        with_duty(duty)
        report = await collect(zoll.registry, grace=0)
        assert report.blobs == len(strays)
        worked = sum(report.seconds.values()) - report.rested
        if duty == 1.0:
            assert report.rested == 0
        else:
            assert report.rested >= 0.5 * worked, report.to_json()


async def test_concurrent_pushes_never_lose_content(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """GC with no grace period runs in a loop while clients push; every push that
    succeeded must stay fully pullable. A push may be refused (and is retried), never
    accepted and then broken."""
    shared_layer = os.urandom(4096)
    stop = asyncio.Event()
    collections = 0

    async def gc_loop() -> None:
        nonlocal collections
        while not stop.is_set():
            await collect(zoll.registry, grace=0)
            collections += 1
            await asyncio.sleep(random.random() / 50)

    async def pusher(worker: int) -> list[tuple[str, Image]]:
        done = []
        for i in range(6):
            image = Image.random(layers=1)
            image.layers.append(shared_layer)
            name, tag = f"team{worker % 2}/app", f"w{worker}-{i}"
            for _attempt in range(200):
                for blob in (image.config, *image.layers):
                    await push_blob(http, zoll.url, name, blob)
                r = await push_manifest(
                    http, zoll.url, name, tag, image.manifest(), image.media_type
                )
                if r.status == 201:
                    done.append((f"{name}:{tag}", image))
                    break
                assert r.status == 400  # MANIFEST_BLOB_UNKNOWN: GC took a link; push again
                await asyncio.sleep(random.random() / 100)
        return done

    gc_task = asyncio.create_task(gc_loop())
    try:
        results = await asyncio.gather(*(pusher(w) for w in range(4)))
    finally:
        stop.set()
        await gc_task
    assert collections > 3
    pushed = [item for result in results for item in result]
    assert len(pushed) == 24
    for ref, image in pushed:
        name, tag = ref.split(":")
        async with http.get(f"{zoll.url}/v2/{name}/manifests/{tag}") as r:
            assert r.status == 200
            assert await r.read() == image.manifest()
        for blob in (image.config, *image.layers):
            assert await readable(zoll, http, name, sha256(blob))


async def test_sweeps_in_batches_delete_each_batch_in_one_storage_call(
    zoll: LiveRegistry, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With batches of two, every sweep crosses several batches (and repositories): all
    garbage goes, nothing kept does, and each batch of blobs is one storage call that
    names each collected blob once."""
    monkeypatch.setattr("registry.gc.BATCH", 2)
    monkeypatch.setattr("registry.gc.BLOB_BATCH", 2)
    kept = {}
    for name in ("a/one", "b/two", "c/three"):
        image = Image.random()
        await push_image(http, zoll.url, name, image, "v1")
        kept[name] = image
        dropped = Image.random()
        await push_image(http, zoll.url, name, dropped, dropped.digest)  # untagged
        for _ in range(3):
            await push_blob(http, zoll.url, name, os.urandom(300))  # never referenced
    calls: list[list[str]] = []
    real_delete = zoll.registry.driver.delete_many

    async def counted(keys: Sequence[str]) -> dict[str, str]:
        calls.append(list(keys))
        return await real_delete(keys)

    monkeypatch.setattr(zoll.registry.driver, "delete_many", counted)

    report = await collect(zoll.registry, grace=0)

    assert report.manifests == 3
    assert report.blobs == 3 * (3 + 3)  # the dropped images' config and layers, the strays
    deletes = [key for call in calls for key in call]
    assert len(deletes) == len(set(deletes)) == report.blobs
    assert all(len(call) <= 2 for call in calls)
    assert report.deep  # the first collection lists the store too
    assert set(report.seconds) == {"uploads", "manifests", "links", "blobs", "storage", "deep"}
    for name, image in kept.items():
        for blob in (image.config, *image.layers):
            assert await readable(zoll, http, name, sha256(blob))
    remaining = await zoll.registry.pool.fetchval("SELECT count(*) FROM blobs")
    assert len(await stored_keys(zoll)) == remaining == 3 * 3
