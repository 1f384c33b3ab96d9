"""Proxied blob GETs on S3 (real SeaweedFS, real HTTP clients): bodies of 1 MiB and more
go store socket → pipe → client socket with splice(2) (registry/http/splice.py), smaller
ones through the pooled connection. Both must give the bytes and ranges the row says, and
a body that cannot be complete must never look complete."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from registry.db import blobs as blob_rows
from registry.http import splice
from registry.oci.digest import Digest
from tests.support.oci import push_blob
from tests.support.servers import LiveRegistry, S3Server, live_registry, registry_config

MiB = 1024 * 1024
S3 = pytest.mark.parametrize("driver", ["s3"])


async def _storage_key(zoll: LiveRegistry, name: str, digest: str) -> str:
    info = await blob_rows.in_repository(zoll.registry.pool, name, Digest.parse(digest))
    assert info is not None
    return info.storage_key


async def _relays_end(timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while splice.COUNT.running:
            await asyncio.sleep(0.05)


@S3
async def test_large_blobs_are_spliced_whole_and_in_ranges(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    data = os.urandom(9 * MiB + 123)
    digest = await push_blob(http, zoll.url, "spliced", data)
    url = f"{zoll.url}/v2/spliced/blobs/{digest}"
    started = splice.COUNT.started
    async with http.get(url) as r:
        assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
        assert await r.read() == data
    async with http.head(url) as r:
        assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
        assert await r.read() == b""
    for first, last, status in (
        (0, len(data) - 1, 206),
        (5 * MiB + 7, len(data) - 1, 206),  # to the end, from inside the object
        (3, 2 * MiB + 3, 206),
        (len(data) - 10, len(data) - 1, 206),  # small: the pooled connection
    ):
        async with http.get(url, headers={"Range": f"bytes={first}-{last}"}) as r:
            assert r.status == status
            assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
            assert await r.read() == data[first : last + 1]
    async with http.get(url, headers={"Range": "bytes=-1048577"}) as r:
        assert r.status == 206 and await r.read() == data[-1048577:]
    assert splice.COUNT.started - started == 5  # the whole GET and four large ranges
    await _relays_end()


@S3
@pytest.mark.parametrize("size", [600 * 1024, 6 * MiB])
async def test_a_stored_object_shorter_than_its_row_breaks_the_connection(
    zoll: LiveRegistry, http: aiohttp.ClientSession, size: int
) -> None:
    """The object in S3 lost its tail (replaced out of band): the client gets the
    headers of the full blob and then a broken connection, never a body that looks
    complete and never a hang (it used to keep the connection open, the client waiting
    for bytes that would not come). Spliced (6 MiB) and streamed (600 KiB) alike; the
    server goes on serving."""
    data = os.urandom(size)
    digest = await push_blob(http, zoll.url, "shortened", data)
    driver = zoll.registry.driver.inner  # type: ignore[attr-defined]
    await driver.put_object(await _storage_key(zoll, "shortened", digest), data[: size // 2])
    url = f"{zoll.url}/v2/shortened/blobs/{digest}"
    async with aiohttp.ClientSession() as fresh:  # keep-alive, as pulling clients do
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            async with asyncio.timeout(20), fresh.get(url) as r:
                assert r.status == 200 and r.headers["Content-Length"] == str(size)
                await r.read()
    other = os.urandom(size)
    async with http.get(
        f"{zoll.url}/v2/shortened/blobs/{await push_blob(http, zoll.url, 'shortened', other)}"
    ) as r:
        assert await r.read() == other
    await _relays_end()


@S3
async def test_a_client_that_hangs_up_mid_body_ends_the_relay(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """A client that reads 1 MiB of a 64 MiB blob and closes: the relay's thread ends
    (and with it the store's connection), and the server serves the next client."""
    data = os.urandom(64 * MiB)
    digest = await push_blob(http, zoll.url, "hangup", data)
    host, port = zoll.url.removeprefix("http://").split(":")
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /v2/hangup/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        async with asyncio.timeout(20):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(MiB)
            assert splice.COUNT.running >= 1
        writer.transport.abort()
    await _relays_end()
    async with http.get(f"{zoll.url}/v2/hangup/blobs/{digest}") as r:
        assert await r.read() == data
    await _relays_end()


async def test_a_client_that_takes_nothing_is_dropped_after_the_idle_timeout(
    pg_dsn: str, tmp_path: Path, s3_server: S3Server, http: aiohttp.ClientSession
) -> None:
    """A client that reads the headers of a 64 MiB blob and then nothing: once the
    socket buffers are full, the relay gives up after `http.idle_timeout` (2 s here) and
    closes the connection, instead of holding a thread and an S3 connection."""
    config = registry_config(pg_dsn, tmp_path / "data", "s3", s3_server, http={"idle_timeout": 2})
    async with live_registry(config) as live:
        data = os.urandom(64 * MiB)
        digest = await push_blob(http, live.url, "stalled", data)
        host, port = live.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"GET /v2/stalled/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            async with asyncio.timeout(20):
                assert (await reader.readline()).startswith(b"HTTP/1.1 200")
                while not splice.COUNT.running:
                    await asyncio.sleep(0.05)
            started = time.monotonic()
            await _relays_end(timeout=20)
            assert 1.5 < time.monotonic() - started < 15
        finally:
            writer.transport.abort()
        async with http.get(f"{live.url}/v2/stalled/blobs/{digest}") as r:
            assert await r.read() == data
        await _relays_end()


@S3
async def test_many_concurrent_pulls_each_get_their_bytes(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """48 clients at once (whole blobs and ranges, spliced and streamed) each get exactly
    their bytes: relays never mix up connections."""
    blobs = [os.urandom(3 * MiB + i) for i in range(4)]
    digests = [await push_blob(http, zoll.url, "crowd", b) for b in blobs]

    async def pull(i: int) -> None:
        data, digest = blobs[i % 4], digests[i % 4]
        first = (i * 65537) % MiB
        last = len(data) - 1 if i % 3 else first + (i % 2) * 2 * MiB + 999
        async with aiohttp.ClientSession() as own:
            ranged = {"Range": f"bytes={first}-{last}"} if i % 6 else {}
            async with own.get(f"{zoll.url}/v2/crowd/blobs/{digest}", headers=ranged) as r:
                got = await r.read()
        assert got == (data[first : last + 1] if ranged else data), i

    async with asyncio.timeout(120):
        await asyncio.gather(*(pull(i) for i in range(48)))
    await _relays_end()


@S3
async def test_an_object_gone_from_s3_answers_as_on_the_pooled_path(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """A row whose object is gone: the spliced path falls back to the ordinary call, so
    a large blob answers exactly like a small one (before any header is sent)."""
    driver = zoll.registry.driver.inner  # type: ignore[attr-defined]
    answers = []
    for size in (1000, 2 * MiB):
        digest = await push_blob(http, zoll.url, "vanished", os.urandom(size))
        await driver.delete(await _storage_key(zoll, "vanished", digest))
        async with http.get(f"{zoll.url}/v2/vanished/blobs/{digest}") as r:
            answers.append((r.status, (await r.json())["errors"][0]["code"]))
    assert answers[0] == answers[1] and answers[0][0] >= 400
