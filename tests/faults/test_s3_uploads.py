"""S3 failing under blob uploads (real SeaweedFS, killed and restarted by the test): the
upload's buffer memory comes back on every path, so uploads work again the moment the
store does, and the budget in use is what /metrics says."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.conftest import FaultySeaweed
from tests.support.servers import LiveRegistry, live_registry, registry_config

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.fixture
async def zoll_on_faulty_s3(
    pg_dsn: str, tmp_path: Path, s3_fault: FaultySeaweed
) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "s3",
        s3_fault.server,
        storage={
            "buffer_budget": 16 * MiB,
            "buffer_wait": 5,
            "s3": {"parts_in_flight": 1, "max_attempts": 1, "connect_timeout": 2},
        },
    )
    async with live_registry(config) as live:
        yield live


async def _budget_metric(http: aiohttp.ClientSession, live: LiveRegistry) -> float:
    async with http.get(f"{live.url}/metrics") as r:
        text = await r.text()
    found = re.search(r"^zoll_upload_buffer_bytes(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert found, "the upload buffer gauge is exported"
    return float(found.group(1))


async def _upload_while_the_store_dies(
    http: aiohttp.ClientSession, live: LiveRegistry, store: FaultySeaweed, announced: bool
) -> int:
    """A PATCH of three parts: the first reaches S3, then S3 is killed, so the second
    part fails in the background and the third finds that failure. `announced`: with a
    Content-Length, so its parts are streamed rather than buffered."""
    async with http.post(f"{live.url}/v2/faults/app/blobs/uploads/") as r:
        assert r.status == 202
        location = r.headers["Location"]

    async def body() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b"a" * MiB
        await asyncio.sleep(1.0)  # part 1 (6 MiB) is stored by now
        await asyncio.to_thread(store.kill)
        for _ in range(12):
            yield b"b" * MiB

    url = location if location.startswith("http") else live.url + location
    headers = {"Content-Length": str(18 * MiB)} if announced else {}
    async with http.patch(url, data=body(), headers=headers) as r:
        await r.read()
        return r.status


@pytest.mark.parametrize("announced", [False, True], ids=["chunked", "streamed"])
async def test_failed_multipart_uploads_give_their_buffer_back(
    zoll_on_faulty_s3: LiveRegistry,
    s3_fault: FaultySeaweed,
    http: aiohttp.ClientSession,
    announced: bool,
) -> None:
    live = zoll_on_faulty_s3
    for _ in range(3):  # three leaks of 7 MiB used to exhaust a 16 MiB budget for good
        status = await _upload_while_the_store_dies(http, live, s3_fault, announced)
        assert status == 503
        await asyncio.to_thread(s3_fault.restart)
        assert live.registry.budget.used == 0
        assert await _budget_metric(http, live) == 0

    for n in range(10):  # the store is back: small uploads go through at once
        blob = f"blob {n}".encode()
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        async with asyncio.timeout(20):
            async with http.post(
                f"{live.url}/v2/faults/app/blobs/uploads/",
                params={"digest": digest},
                data=blob,
                headers={"Content-Type": "application/octet-stream"},
            ) as r:
                assert r.status == 201, await r.text()


async def test_an_upload_that_cannot_get_buffer_memory_gets_503_not_a_hang(
    zoll_on_faulty_s3: LiveRegistry, s3_fault: FaultySeaweed, http: aiohttp.ClientSession
) -> None:
    """While the store is stalled, parts cannot drain and the buffer fills; further
    uploads wait `storage.buffer_wait` seconds, then get 503 with Retry-After."""
    live = zoll_on_faulty_s3
    budget = live.registry.budget
    await budget.acquire(budget.total)  # everything taken, as by stalled uploads
    try:
        async with asyncio.timeout(20):
            async with http.post(
                f"{live.url}/v2/faults/app/blobs/uploads/",
                params={"digest": "sha256:" + hashlib.sha256(b"x").hexdigest()},
                data=b"x",
            ) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "5"
                body = await r.json()
        assert body["errors"][0]["code"] == "UNAVAILABLE"
        assert "buffer" in body["errors"][0]["message"]
        assert await _budget_metric(http, live) == budget.total
    finally:
        budget.release(budget.total)
    assert budget.used == 0
