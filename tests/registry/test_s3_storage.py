"""The S3 data path: SigV4 signing, S3's size limits (10,000 parts of at most 5 GiB,
objects of at most 5 TiB) and what blob reads cost in S3 calls (real SeaweedFS)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from registry.config import S3Config
from registry.gc import collect
from registry.oci.digest import Digest
from registry.storage.base import ObjectTooLarge, content_key
from registry.storage.budget import ByteBudget
from registry.storage.s3 import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    STREAM_WINDOW,
    S3Driver,
    part_size_for,
)
from registry.storage.sigv4 import Credentials, presign_url, sign_headers
from tests.support.oci import Image, push_blob, push_image, sha256
from tests.support.servers import LiveRegistry, S3Server

MiB = 1024 * 1024
# AWS's documented S3 SigV4 examples ("Authenticating Requests: Using the Authorization
# Header" and "Query String Authentication"): this key, bucket and time give these.
AWS_EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
AWS_ENDPOINT = "https://examplebucket.s3.amazonaws.com"
AWS_TIME = datetime(2013, 5, 24, tzinfo=UTC)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_signatures_match_the_aws_documentation_examples() -> None:
    headers = sign_headers(
        AWS_EXAMPLE,
        "us-east-1",
        "GET",
        AWS_ENDPOINT,
        "/test.txt",
        {},
        {"Range": "bytes=0-9"},
        payload_hash=EMPTY_SHA256,
        now=AWS_TIME,
    )
    assert headers["Authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    url = presign_url(
        AWS_EXAMPLE, "us-east-1", "GET", AWS_ENDPOINT, "/test.txt", 86400, now=AWS_TIME
    )
    assert "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404" in url


@pytest.mark.parametrize(
    "base", [5 * MiB, 8 * MiB - 1, 8 * MiB, 16 * MiB, 100 * MiB, 1024 * MiB, 5 * 1024 * MiB]
)
def test_ten_thousand_parts_hold_five_tebibytes_for_every_part_size(base: int) -> None:
    """Whatever `storage.s3.part_size` is (5 MiB … 5 GiB), the growing part sizes reach
    S3's object limit before its part limit, and no part passes S3's 5 GiB, even with
    the last chunk that fills it (a part is sent once it holds at least its size)."""
    sizes = [part_size_for(n, base) for n in range(1, MAX_PARTS + 1)]
    assert sum(sizes) >= MAX_OBJECT_SIZE
    assert all(5 * MiB <= s and s + 16 * MiB <= MAX_PART_SIZE for s in sizes)
    assert sizes == sorted(sizes)
    assert sizes[0] == min(base, sizes[-1])


def test_blobs_under_sixteen_gibibytes_keep_the_configured_part_size() -> None:
    assert {part_size_for(n, 16 * MiB) for n in range(1, 1001)} == {16 * MiB}
    assert part_size_for(1001, 16 * MiB) == 32 * MiB


def _config(s3_server: S3Server) -> S3Config:
    return S3Config(**s3_server.settings())


async def test_an_upload_past_five_tebibytes_is_refused_before_anything_is_sent(
    s3_server: S3Server,
) -> None:
    driver = S3Driver(_config(s3_server), ByteBudget(64 * MiB))
    await driver.start()
    try:
        writer = await driver.resume_upload("huge", {}, MAX_OBJECT_SIZE - 2)
        calls = driver.client.calls
        await writer.write([b"ab"])  # exactly 5 TiB is allowed
        with pytest.raises(ObjectTooLarge):
            await writer.write([b"c"])
        assert writer.size == MAX_OBJECT_SIZE
        assert driver.client.calls == calls
        await writer.close()
        assert driver.budget.used == 0
    finally:
        await driver.close()


async def test_an_announced_upload_streams_its_parts_in_bounded_memory(
    s3_server: S3Server,
) -> None:
    """With the request's length known, parts go to S3 while their bytes arrive: the
    memory held is the stream window per part in flight, not the part size (buffered
    parts held 6 MiB each here, three at a time); the blob arrives intact."""
    driver = S3Driver(_config(s3_server), ByteBudget(64 * MiB))
    await driver.start()
    try:
        data = os.urandom(23 * MiB)  # four streamed 5 MiB parts and a buffered last one
        writer = await driver.resume_upload("streamed", {}, 0)
        writer.expect(len(data))
        peak, piece = 0, 256 * 1024
        for start in range(0, 20 * MiB, piece):
            async with asyncio.timeout(30):  # a full window must never stall the writer
                await writer.write([data[start : start + piece]])
            peak = max(peak, driver.budget.used)
        await writer.write([data[20 * MiB :]])
        key = await writer.commit(Digest.of(data))
        assert peak <= driver.config.parts_in_flight * STREAM_WINDOW
        assert driver.budget.used == 0
        assert b"".join([c async for c in driver.read(key)]) == data
    finally:
        await driver.close()


async def _raw_request(url: str, head: str, body: bytes) -> tuple[int, dict[str, object]]:
    """Send a request whose Content-Length the body does not fill (no client would send
    6 TiB to learn it is refused) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        async with asyncio.timeout(30):
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            document = await reader.readexactly(length)
    finally:
        writer.close()
    return int(status_line.split()[1]), json.loads(document)


@pytest.mark.parametrize("driver", ["s3"])
async def test_a_blob_larger_than_s3_can_hold_gets_an_oci_error_not_a_retry(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """A client announcing more than 5 TiB is refused at once with the spec's error body
    (413, BLOB_UPLOAD_INVALID), before its body is read; the upload stays usable."""
    too_big = MAX_OBJECT_SIZE + 1
    async with http.post(f"{zoll.url}/v2/big/blobs/uploads/") as r:
        location = r.headers["Location"]
    for method, path in (
        ("PATCH", location),
        ("PUT", f"{location}?digest={sha256(b'x')}"),
        ("POST", f"/v2/big/blobs/uploads/?digest={sha256(b'x')}"),
    ):
        status, document = await _raw_request(
            zoll.url,
            f"{method} {path} HTTP/1.1\r\nHost: {zoll.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {too_big}\r\n\r\n",
            b"x" * 1024,
        )
        assert status == 413, (method, document)
        errors = document["errors"]
        assert isinstance(errors, list) and errors[0]["code"] == "BLOB_UPLOAD_INVALID"
        assert "too large" in errors[0]["message"]
    data = os.urandom(1000)
    async with http.put(f"{zoll.url}{location}?digest={sha256(data)}", data=data) as r:
        assert r.status == 201


@pytest.mark.parametrize("driver", ["s3"])
async def test_blob_reads_cost_at_most_one_s3_call(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """HEAD answers from PostgreSQL (no S3 call); a proxied GET is one GetObject."""
    data = os.urandom(3 * MiB)
    digest = await push_blob(http, zoll.url, "counted", data)
    client = zoll.registry.driver.inner.client  # type: ignore[attr-defined]
    url = f"{zoll.url}/v2/counted/blobs/{digest}"
    for _ in range(5):
        before = client.calls
        async with http.head(url) as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
        assert client.calls - before <= 1
    before = client.calls
    async with http.get(url) as r:
        assert await r.read() == data
    assert client.calls - before == 1
    before = client.calls
    async with http.get(url, headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206 and await r.read() == data[10:20]
    assert client.calls - before == 1


@pytest.mark.parametrize("driver", ["s3"])
async def test_gc_deletes_a_batch_of_blobs_in_one_s3_request(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """GC on S3 costs one DeleteObjects per batch (500 blobs), not a request per blob:
    on a registry of 1,000,000 blobs that is 2,000 requests instead of 200,000 competing
    with the pushes. The objects are really gone; an image's blobs stay."""
    image = Image.random()
    await push_image(http, zoll.url, "gc/kept", image, "v1")
    strays = [await push_blob(http, zoll.url, "gc/strays", os.urandom(700)) for _ in range(40)]
    client = zoll.registry.driver.inner.client  # type: ignore[attr-defined]
    before = client.calls
    report = await collect(zoll.registry, grace=0, deep=False)
    requests = client.calls - before
    assert report.blobs == len(strays)
    # the batch's DeleteObjects and the upload sweep's two listings (upload tails,
    # multipart uploads): not one per blob, and no listing of the stored blobs
    assert requests == 3, f"{requests} S3 requests to collect {report.blobs} blobs"
    for digest in strays:
        assert await zoll.registry.driver.stat(content_key(Digest.parse(digest))) is None
    for blob in (image.config, *image.layers):
        async with http.get(f"{zoll.url}/v2/gc/kept/blobs/{sha256(blob)}") as r:
            assert r.status == 200 and await r.read() == blob


@pytest.mark.parametrize("driver", ["s3"])
async def test_the_deep_pass_lists_the_store_a_short_page_at_a_time(
    zoll: LiveRegistry, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deep pass asks S3 for `DEEP_PAGE` keys a request (a push meeting it waits for
    one short listing, not a 1,000-key page): every object is still seen, the unrecorded
    ones go, an image's blobs stay."""
    monkeypatch.setattr("registry.gc.DEEP_PAGE", 4)
    image = Image.random(layers=2)
    await push_image(http, zoll.url, "gc/kept", image, "v1")
    strays = [os.urandom(600) for _ in range(10)]
    for data in strays:  # stored with no record: only a listing finds them
        await zoll.registry.driver.put(Digest.parse(sha256(data)), data)
    client = zoll.registry.driver.inner.client  # type: ignore[attr-defined]
    before = client.calls
    report = await collect(zoll.registry, grace=0, deep=True)
    requests = client.calls - before
    assert report.deep and report.orphaned_objects == len(strays)
    # two upload listings; 13 objects at 4 a page: 4 listings; one delete per stray
    assert requests == 2 + 4 + len(strays), requests
    for data in strays:
        assert await zoll.registry.driver.stat(content_key(Digest.parse(sha256(data)))) is None
    for blob in (image.config, *image.layers):
        async with http.get(f"{zoll.url}/v2/gc/kept/blobs/{sha256(blob)}") as r:
            assert r.status == 200 and await r.read() == blob


async def test_presigned_urls_work_against_a_real_store(
    s3_server: S3Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    driver = S3Driver(_config(s3_server), ByteBudget(64 * MiB))
    await driver.start()
    try:
        await driver.put_object("objects/a b+c", b"signed")
        url = await driver.presign("objects/a b+c")
        assert url is not None
        async with http.get(url) as r:
            assert r.status == 200 and await r.read() == b"signed"
        async with http.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")) as r:
            assert r.status == 403
    finally:
        await driver.close()


@pytest.mark.parametrize("driver", ["s3"])
async def test_a_chunked_upload_keeps_only_its_latest_tail(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """Bytes short of a part wait in a tail object between PATCHes; each PATCH replaces
    it, and the one before is deleted (under the configured prefix: it used to stay)."""
    driver = zoll.registry.driver.inner  # type: ignore[attr-defined]
    async with http.post(f"{zoll.url}/v2/tails/blobs/uploads/") as r:
        location = r.headers["Location"]
    chunks = [os.urandom(6 * MiB) for _ in range(3)]
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    for chunk in chunks:
        async with http.patch(f"{zoll.url}{location}", data=chunk) as r:
            assert r.status == 202
            location = r.headers["Location"]
        tails = [o.key async for o in driver._list(driver.key(f"uploads/{upload_id}/"))]
        assert len(tails) == 1
    data = b"".join(chunks)
    async with http.put(f"{zoll.url}{location}?digest={sha256(data)}") as r:
        assert r.status == 201
    assert not [o async for o in driver._list(driver.key("uploads/"))]
    async with http.get(f"{zoll.url}/v2/tails/blobs/{sha256(data)}") as r:
        assert await r.read() == data
