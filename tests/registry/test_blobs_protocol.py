"""OCI Distribution blob endpoints, on both storage drivers, spoken over real HTTP."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp

from tests.support.oci import error_codes, push_blob, sha256
from tests.support.servers import LiveRegistry


async def test_version_check_announces_api(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{zoll.url}/v2/") as r:
        assert r.status == 200
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_monolithic_post_then_head_get_and_ranges(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = await push_blob(http, zoll.url, "team/app", data)
    url = f"{zoll.url}/v2/team/app/blobs/{digest}"
    async with http.head(url) as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == len(data)
        assert r.headers["Docker-Content-Digest"] == digest
    async with http.get(url) as r:
        assert r.status == 200
        assert await r.read() == data
    async with http.get(url, headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert await r.read() == data[10:20]
    async with http.get(url, headers={"Range": "bytes=-5"}) as r:
        assert r.status == 206
        assert await r.read() == data[-5:]
    async with http.get(url, headers={"Range": f"bytes={len(data) + 5}-"}) as r:
        assert r.status == 416
    # The blob is linked to team/app only.
    async with http.head(f"{zoll.url}/v2/other/blobs/{digest}") as r:
        assert r.status == 404


async def test_post_then_put_with_body(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    data = os.urandom(1000)
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/") as r:
        assert r.status == 202
        location = r.headers["Location"]
        assert r.headers["Range"] == "0-0"
    async with http.put(f"{zoll.url}{location}?digest={sha256(data)}", data=data) as r:
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/app/blobs/{sha256(data)}"
    async with http.get(f"{zoll.url}/v2/app/blobs/{sha256(data)}") as r:
        assert await r.read() == data


async def test_chunked_upload_with_resume_and_out_of_order_chunk(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    chunk = 6 * 1024 * 1024  # above S3's part minimum, so parts and tails both occur
    data = os.urandom(2 * chunk + 12345)
    async with http.post(f"{zoll.url}/v2/chunky/blobs/uploads/") as r:
        location = f"{zoll.url}{r.headers['Location']}"
    pieces = [(0, 1000), (1000, chunk), (chunk, 2 * chunk), (2 * chunk, len(data))]
    for start, end in pieces[:3]:
        headers = {
            "Content-Range": f"{start}-{end - 1}",
            "Content-Type": "application/octet-stream",
        }
        async with http.patch(location, data=data[start:end], headers=headers) as r:
            assert r.status == 202, await r.text()
            assert r.headers["Range"] == f"0-{end - 1}"
            location = f"{zoll.url}{r.headers['Location']}"
    # Resumable status: a client that lost track asks where to continue.
    async with http.get(location) as r:
        assert r.status == 204
        assert r.headers["Range"] == f"0-{2 * chunk - 1}"
    # A chunk that does not start at the end is refused and changes nothing.
    async with http.patch(location, data=b"x" * 10, headers={"Content-Range": "5-14"}) as r:
        assert r.status == 416
        assert r.headers["Range"] == f"0-{2 * chunk - 1}"
    start, end = pieces[3]
    async with http.put(
        f"{location}?digest={sha256(data)}",
        data=data[start:end],
        headers={"Content-Range": f"{start}-{end - 1}"},
    ) as r:
        assert r.status == 201, await r.text()
    async with http.get(f"{zoll.url}/v2/chunky/blobs/{sha256(data)}") as r:
        assert await r.read() == data


async def test_streamed_patch_without_content_range(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    data = os.urandom(7 * 1024 * 1024 + 3)

    async def body():  # chunked transfer encoding, as docker and containerd send it
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    async with http.post(f"{zoll.url}/v2/stream/blobs/uploads/") as r:
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.patch(location, data=body()) as r:
        assert r.status == 202
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.put(f"{location}?digest={sha256(data)}") as r:
        assert r.status == 201
    async with http.get(f"{zoll.url}/v2/stream/blobs/{sha256(data)}") as r:
        assert await r.read() == data


async def test_chunked_transfer_encoding_with_thousands_of_tiny_chunks(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """A streaming client (Transfer-Encoding: chunked) may send its body in pieces of any
    size; thousands of tiny pieces and a few large ones all land in order."""
    pieces = [os.urandom(7) for _ in range(3000)] + [os.urandom(1_500_000), b"x", b"yz"] * 2
    data = b"".join(pieces)

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async with http.post(f"{zoll.url}/v2/stream/app/blobs/uploads/") as r:
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.patch(location, data=body()) as r:
        assert r.status == 202, await r.text()
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.put(f"{location}?digest={sha256(data)}") as r:
        assert r.status == 201, await r.text()
    async with http.get(f"{zoll.url}/v2/stream/app/blobs/{sha256(data)}") as r:
        assert await r.read() == data


async def test_wrong_digest_leaves_nothing_behind(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    wrong = sha256(b"something else")
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/") as r:
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.patch(location, data=data) as r:
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.put(f"{location}?digest={wrong}") as r:
        assert r.status == 400
        assert await error_codes(r) == ["DIGEST_INVALID"]
    async with http.get(location) as r:
        assert r.status == 404
        assert await error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    for digest in (wrong, sha256(data)):
        async with http.head(f"{zoll.url}/v2/app/blobs/{digest}") as r:
            assert r.status == 404
    # A monolithic upload with the wrong digest fails the same way.
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/?digest={wrong}", data=data) as r:
        assert r.status == 400
    stored = [o async for o in zoll.registry.driver.list_blobs()]
    pending = [u async for u in zoll.registry.driver.list_uploads()]
    assert stored == [] and pending == []
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM blobs") == 0
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM upload_sessions") == 0


async def test_cancel_upload(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/") as r:
        location = f"{zoll.url}{r.headers['Location']}"
    async with http.patch(location, data=b"partial") as r:
        assert r.status == 202
    async with http.delete(location) as r:
        assert r.status == 204
    async with http.get(location) as r:
        assert r.status == 404
    assert [u async for u in zoll.registry.driver.list_uploads()] == []


async def test_cross_repository_mount(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    data = os.urandom(4096)
    digest = await push_blob(http, zoll.url, "source/repo", data)
    async with http.post(
        f"{zoll.url}/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"
    ) as r:
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/target/repo/blobs/{digest}"
    async with http.get(f"{zoll.url}/v2/target/repo/blobs/{digest}") as r:
        assert await r.read() == data
    # Mounting from a repository that lacks the blob falls back to an upload session.
    async with http.post(f"{zoll.url}/v2/third/blobs/uploads/?mount={digest}&from=nowhere") as r:
        assert r.status == 202
        assert "/blobs/uploads/" in r.headers["Location"]
    async with http.head(f"{zoll.url}/v2/third/blobs/{digest}") as r:
        assert r.status == 404
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM blobs") == 1


async def test_delete_blob_unlinks_it(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    digest = await push_blob(http, zoll.url, "app", b"bye")
    async with http.delete(f"{zoll.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 202
    async with http.head(f"{zoll.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 404
    async with http.delete(f"{zoll.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 404
        assert await error_codes(r) == ["BLOB_UNKNOWN"]


async def test_duplicate_uploads_store_bytes_once(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    for repo in ("a", "b", "a"):
        async with http.post(f"{zoll.url}/v2/{repo}/blobs/uploads/") as r:
            location = f"{zoll.url}{r.headers['Location']}"
        async with http.put(f"{location}?digest={sha256(data)}", data=data) as r:
            assert r.status == 201
    stored = [o async for o in zoll.registry.driver.list_blobs()]
    assert len(stored) == 1 and stored[0].size == len(data)


async def test_blob_pulls_whole_or_abandoned_leave_no_descriptor_open(
    zoll: LiveRegistry,
) -> None:
    """Bodies sent past the event loop (sendfile, splice) run in threads on descriptors of
    their own: every one is closed when its pull ends, finished or abandoned by the
    client, or a busy registry runs out of descriptors."""
    data = os.urandom(4 * 1024 * 1024)
    async with aiohttp.ClientSession() as http:
        digest = await push_blob(http, zoll.url, "fds/app", data)
    url = f"{zoll.url}/v2/fds/app/blobs/{digest}"

    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_descriptors()
    for _ in range(10):
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert await r.read() == data
            async with http.get(url) as r:
                await r.content.readexactly(1000)  # then hang up mid-body
    for _ in range(50):  # an abandoned send notices within a second
        if open_descriptors() <= before + 2:
            break
        await asyncio.sleep(0.1)
    assert open_descriptors() <= before + 2
