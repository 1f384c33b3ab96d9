"""Slow and idle clients (slowloris): connections that trickle headers, stall mid-body or
read nothing are cut after the header and idle timeouts; one address cannot hold more
than its share of connections; clients from elsewhere are served throughout; and a slow
blob transfer that keeps progressing is never cut, however long it takes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.conftest import audit_verifies
from tests.support.servers import LiveRegistry, S3Server, live_registry, registry_config

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
PER_ADDRESS = 40
KiB = 1024


@pytest.fixture
async def guarded(pg_dsn: str, tmp_path: Path, s3_server: S3Server) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "s3",
        s3_server,
        http={
            "header_timeout": HEADER_TIMEOUT,
            "idle_timeout": IDLE_TIMEOUT,
            "max_connections_per_address": PER_ADDRESS,
        },
    )
    async with live_registry(config) as live:
        yield live


async def _closed(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection (fails if it stays open)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_trickled_headers_are_cut_and_an_address_has_a_connection_cap(
    guarded: LiveRegistry,
) -> None:
    host, port = guarded.host.split(":")
    attackers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(PER_ADDRESS):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: zoll\r\n")
        attackers.append((reader, writer))
    await asyncio.sleep(0.3)

    # One more from the same address: refused at once, with a status a client understands.
    reader, writer = await asyncio.open_connection(host, int(port))
    assert (await _closed(reader, 2)).startswith(b"HTTP/1.1 429")
    writer.close()

    # Another address is served while the attack goes on.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as other,
        other.get(f"{guarded.url}/v2/") as r,
    ):
        assert r.status == 200

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for n in range(40):  # a header line every 0.5 s: forever, were it allowed
            writer.write(f"X-Slow-{n}: y\r\n".encode())
            await asyncio.sleep(0.5)

    tricklers = [asyncio.create_task(trickle(w)) for _, w in attackers]
    started = time.monotonic()
    try:
        for reader, _ in attackers:
            assert await _closed(reader, HEADER_TIMEOUT + 5) == b""
    finally:
        for task in tricklers:
            task.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
        for _, writer in attackers:
            writer.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + 3

    # Their slots are free again: the same address is served.
    async with aiohttp.ClientSession() as http, http.get(f"{guarded.url}/v2/") as r:
        assert r.status == 200


async def test_a_stalled_body_is_cut_and_its_upload_can_be_resumed(
    guarded: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{guarded.url}/v2/slow/app/blobs/uploads/") as r:
        location = guarded.url + r.headers["Location"]

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 64 * KiB
        await asyncio.sleep(60)

    started = time.monotonic()
    with pytest.raises(aiohttp.ClientError):
        async with asyncio.timeout(IDLE_TIMEOUT + 10):
            async with http.patch(location, data=stalls()) as r:
                await r.read()
    assert time.monotonic() - started < IDLE_TIMEOUT + 5
    blob = os.urandom(200 * KiB)
    async with http.patch(location, data=blob) as r:  # the lease ended with the request
        assert r.status == 202, await r.text()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    async with http.put(location, params={"digest": digest}) as r:
        assert r.status == 201


async def test_slow_but_progressing_transfers_are_never_cut(
    guarded: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """Each takes about three times the idle timeout, always moving."""
    blob = os.urandom(600 * KiB)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    async def slowly() -> AsyncIterator[bytes]:
        for offset in range(0, len(blob), 64 * KiB):
            yield blob[offset : offset + 64 * KiB]
            await asyncio.sleep(IDLE_TIMEOUT / 3)

    started = time.monotonic()
    async with http.post(
        f"{guarded.url}/v2/slow/app/blobs/uploads/", params={"digest": digest}, data=slowly()
    ) as r:
        assert r.status == 201, await r.text()
    assert time.monotonic() - started > 2 * IDLE_TIMEOUT

    big = os.urandom(24 * 1024 * KiB)  # more than the socket buffers hold
    big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
    async with http.post(
        f"{guarded.url}/v2/slow/app/blobs/uploads/", params={"digest": big_digest}, data=big
    ) as r:
        assert r.status == 201
    started = time.monotonic()
    received = bytearray()
    connector = aiohttp.TCPConnector(limit=1)
    async with (
        aiohttp.ClientSession(connector=connector, read_bufsize=64 * KiB) as slow,
        slow.get(f"{guarded.url}/v2/slow/app/blobs/{big_digest}") as r,
    ):
        assert r.status == 200
        async for chunk in r.content.iter_chunked(256 * KiB):
            received += chunk
            if time.monotonic() - started < 3 * IDLE_TIMEOUT:
                await asyncio.sleep(0.5)
    assert bytes(received) == big
    assert time.monotonic() - started > 2 * IDLE_TIMEOUT
    await audit_verifies(guarded.config.database.dsn or "")


async def test_a_client_that_reads_nothing_of_a_blob_file_is_dropped(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """On the filesystem the body goes out with sendfile(2) from a thread: a client that
    takes the headers of a 64 MiB blob and then nothing is dropped after
    `http.idle_timeout`, as on every other path, and never receives the rest."""
    config = registry_config(
        pg_dsn, tmp_path / "data", "filesystem", None, http={"idle_timeout": IDLE_TIMEOUT}
    )
    async with live_registry(config) as live:
        blob = os.urandom(64 * 1024 * KiB)  # far more than the socket buffers hold
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        async with http.post(
            f"{live.url}/v2/idle/blobs/uploads/", params={"digest": digest}, data=blob
        ) as r:
            assert r.status == 201
        host, port = live.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        try:
            request = f"GET /v2/idle/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            writer.write(f"{request}\r\n".encode())
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(IDLE_TIMEOUT + 3)  # takes nothing meanwhile
            received = 0
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(20):
                    while chunk := await reader.read(1 << 20):
                        received += len(chunk)
            assert received < len(blob)
        finally:
            writer.transport.abort()
        async with http.get(f"{live.url}/v2/idle/blobs/{digest}") as r:
            assert r.status == 200 and await r.read() == blob
