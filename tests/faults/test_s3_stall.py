"""A stalled object store (SeaweedFS paused with SIGSTOP: connections open, nothing
answers): requests fail within the storage deadline with 503 and Retry-After instead of
hanging, /readyz says storage is failing within seconds, a pull cut mid-body ends the
connection, GC gives up cleanly — and everything works again once the store resumes,
with every acknowledged blob still there."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from registry.gc import collect
from tests.faults.conftest import FaultySeaweed, audit_verifies, get_as_client, readyz_within
from tests.support.servers import LiveRegistry, live_registry, registry_config

MiB = 1024 * 1024
TIMEOUT = 3.0


@pytest.fixture
async def zoll_on_stalling_s3(
    pg_dsn: str, tmp_path: Path, s3_fault: FaultySeaweed
) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "s3",
        s3_fault.server,
        storage={
            "timeout": TIMEOUT,
            "idle_timeout": TIMEOUT,
            "probe_timeout": 1,
            "stall_cooldown": 2,
            "s3": {"max_attempts": 1, "connect_timeout": 2, "read_timeout": 60},
        },
    )
    async with live_registry(config) as live:
        yield live


async def _push(
    http: aiohttp.ClientSession, live: LiveRegistry, blob: bytes
) -> aiohttp.ClientResponse:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    async with http.post(
        f"{live.url}/v2/faults/stall/blobs/uploads/", params={"digest": digest}, data=blob
    ) as r:
        await r.read()
        return r


async def _pull(http: aiohttp.ClientSession, live: LiveRegistry, blob: bytes) -> bytes:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    return await get_as_client(http, f"{live.url}/v2/faults/stall/blobs/{digest}")


async def test_a_stalled_store_fails_requests_quickly_and_recovers(
    zoll_on_stalling_s3: LiveRegistry, s3_fault: FaultySeaweed, http: aiohttp.ClientSession
) -> None:
    live = zoll_on_stalling_s3
    kept = os.urandom(64 * 1024)
    assert (await _push(http, live, kept)).status == 201  # acknowledged before the stall

    s3_fault.pause()
    try:
        took, body = await readyz_within(http, live.url, ready=False, seconds=5)
        assert took < 4
        assert str(body["checks"]["storage"]).startswith("failed")  # type: ignore[index]
        assert body["checks"]["database"] == "ok"  # type: ignore[index]

        await asyncio.sleep(2)  # the probe's cooldown ends: the next push tries the store
        started = time.monotonic()
        async with asyncio.timeout(TIMEOUT + 10):
            r = await _push(http, live, b"pushed while stalled")
        assert r.status == 503
        assert r.headers["Retry-After"] == "5"
        assert TIMEOUT - 0.5 < time.monotonic() - started < TIMEOUT + 4  # 2 busy CPUs

        # The store is known to be stalled now: requests do not each wait it out.
        digest = "sha256:" + hashlib.sha256(kept).hexdigest()
        started = time.monotonic()
        async with http.get(f"{live.url}/v2/faults/stall/blobs/{digest}") as r:
            assert r.status == 503  # nothing sent yet: a clean error body
            assert (await r.json())["errors"][0]["code"] == "UNAVAILABLE"
        r = await _push(http, live, b"pushed during the cooldown")
        assert r.status == 503
        assert time.monotonic() - started < 1.5
    finally:
        s3_fault.resume()

    took, body = await readyz_within(http, live.url, ready=True, seconds=10)
    assert body["checks"] == {"database": "ok", "storage": "ok"}
    assert await _pull(http, live, kept) == kept
    fresh = os.urandom(1000)
    assert (await _push(http, live, fresh)).status == 201
    assert await _pull(http, live, fresh) == fresh
    await audit_verifies(live.config.database.dsn or "")


@pytest.mark.parametrize("fault", ["pause", "kill"])
async def test_a_pull_cut_by_a_stall_ends_the_connection(
    zoll_on_stalling_s3: LiveRegistry,
    s3_fault: FaultySeaweed,
    http: aiohttp.ClientSession,
    fault: str,
) -> None:
    """Headers and the first bytes are out when the store stalls (or dies): the client
    must see a short body quickly (and retry), never a hang or a body that looks complete."""
    live = zoll_on_stalling_s3
    blob = os.urandom(48 * MiB)
    assert (await _push(http, live, blob)).status == 201
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    received = 0
    started = time.monotonic()
    try:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(TIMEOUT + 60):
                async with http.get(f"{live.url}/v2/faults/stall/blobs/{digest}") as r:
                    assert r.status == 200
                    async for chunk in r.content.iter_chunked(256 * 1024):
                        if received == 0:
                            if fault == "pause":
                                s3_fault.pause()
                            else:
                                await asyncio.to_thread(s3_fault.kill)
                            started = time.monotonic()
                        received += len(chunk)
        assert received < len(blob)
        assert time.monotonic() - started < TIMEOUT + 15
    finally:
        if fault == "pause":
            s3_fault.resume()
        else:
            await asyncio.to_thread(s3_fault.restart)
    await readyz_within(http, live.url, ready=True, seconds=10)
    assert await _pull(http, live, blob) == blob


async def _tag_image(http: aiohttp.ClientSession, live: LiveRegistry, config: bytes) -> None:
    """An image whose config is `config` (already pushed), tagged: GC must keep it."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    async with http.put(
        f"{live.url}/v2/faults/stall/manifests/kept",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    ) as r:
        assert r.status == 201, await r.text()


async def test_gc_on_a_stalled_store_gives_up_and_runs_again_later(
    zoll_on_stalling_s3: LiveRegistry, s3_fault: FaultySeaweed, http: aiohttp.ClientSession
) -> None:
    """A collection that cannot delete an object keeps the blob's row (the delete runs
    inside its batch's transaction) and ends within the deadline, having collected
    nothing; the next one finishes."""
    live = zoll_on_stalling_s3
    kept = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    assert (await _push(http, live, kept)).status == 201
    await _tag_image(http, live, kept)
    garbage = os.urandom(4096)
    assert (await _push(http, live, garbage)).status == 201
    s3_fault.pause()
    try:
        started = time.monotonic()
        async with asyncio.timeout(TIMEOUT + 30):
            stalled = await collect(live.registry, grace=0)
        assert time.monotonic() - started < 2 * TIMEOUT + 5  # the blob sweep, the listing
        assert stalled.blobs == 0 and stalled.bytes_freed == 0
    finally:
        s3_fault.resume()
    await readyz_within(http, live.url, ready=True, seconds=10)
    report = await collect(live.registry, grace=0)
    assert report.blobs == 1
    assert await _pull(http, live, kept) == kept
    await audit_verifies(live.config.database.dsn or "")
