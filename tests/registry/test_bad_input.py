"""Hostile and malformed requests get the spec's error and store nothing."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from registry.oci import mediatypes as mt
from tests.support.oci import Image, error_codes, push_blob, push_manifest, sha256
from tests.support.servers import LiveRegistry


async def raw_request(zoll: LiveRegistry, method: str, path: str) -> tuple[int, dict[str, object]]:
    """Send a request line exactly as written (clients would normalise `..` away)."""
    host, port = zoll.host.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {zoll.host}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body) if body.strip().startswith(b"{") else {}


async def assert_nothing_stored(zoll: LiveRegistry) -> None:
    for table in ("manifests", "tags", "blobs", "repository_blobs"):
        assert await zoll.registry.pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{not json", mt.OCI_MANIFEST, "not valid JSON"),
        (b"[]", mt.OCI_MANIFEST, "must be a JSON object"),
        (
            json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode(),
            mt.DOCKER_SCHEMA1_SIGNED,
            "schema 1",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}).encode(),
            mt.OCI_MANIFEST,
            "config is required",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode(),
            mt.OCI_MANIFEST,
            "does not match",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": "md5:abc", "size": 3},
                    "layers": [],
                }
            ).encode(),
            mt.OCI_MANIFEST,
            "unsupported digest algorithm",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(b""), "size": -1},
                    "layers": [],
                }
            ).encode(),
            mt.OCI_MANIFEST,
            "size must be",
        ),
        (b'{"a":' * 200 + b"1" + b"}" * 200, mt.OCI_MANIFEST, "nested deeper"),
    ],
)
async def test_malformed_manifests(
    zoll: LiveRegistry, http: aiohttp.ClientSession, body: bytes, content_type: str, reason: str
) -> None:
    async with http.put(
        f"{zoll.url}/v2/app/manifests/v1", data=body, headers={"Content-Type": content_type}
    ) as r:
        assert r.status == 400
        error = (await r.json())["errors"][0]
        assert error["code"] == "MANIFEST_INVALID"
        assert reason in error["message"]
    await assert_nothing_stored(zoll)


async def test_oversized_manifest(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    image = Image.random(annotations={"padding": "x" * (4 * 1024 * 1024)})
    r = await push_manifest(http, zoll.url, "app", "big", image.manifest(), mt.OCI_MANIFEST)
    assert r.status == 413
    await assert_nothing_stored(zoll)


@pytest.mark.parametrize(
    "digest",
    ["sha256:short", "sha1:" + "a" * 40, "sha256:" + "A" * 64, "nocolon", "sha256:" + "g" * 64],
)
async def test_invalid_digests(
    zoll: LiveRegistry, http: aiohttp.ClientSession, digest: str
) -> None:
    async with http.post(f"{zoll.url}/v2/app/blobs/uploads/?digest={digest}", data=b"abc") as r:
        assert r.status == 400
        assert await error_codes(r) == ["DIGEST_INVALID"]
    async with http.head(f"{zoll.url}/v2/app/blobs/{digest}") as r:
        assert r.status in (400, 404)
    async with http.get(f"{zoll.url}/v2/app/referrers/{digest}") as r:
        assert r.status == 400
    await assert_nothing_stored(zoll)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/../../etc/passwd/blobs/uploads/",
        "/v2/app/../../x/blobs/uploads/",
        "/v2/UPPER/blobs/uploads/",
        "/v2/a//b/blobs/uploads/",
        "/v2/-lead/blobs/uploads/",
        "/v2/%2e%2e/blobs/uploads/",
        "/v2/" + "a" * 300 + "/blobs/uploads/",
    ],
)
async def test_invalid_repository_names(zoll: LiveRegistry, path: str) -> None:
    status, body = await raw_request(zoll, "POST", path)
    assert status == 400
    assert body["errors"][0]["code"] == "NAME_INVALID"
    await assert_nothing_stored(zoll)
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM upload_sessions") == 0


@pytest.mark.parametrize("upload", ["..%2F..%2Fetc%2Fpasswd", "not-a-uuid", "../../blobs", "%00"])
async def test_upload_ids_cannot_escape(zoll: LiveRegistry, upload: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        status, body = await raw_request(zoll, method, f"/v2/app/blobs/uploads/{upload}")
        assert status in (400, 404), (method, status)
        if body:
            assert body["errors"][0]["code"] in (
                "BLOB_UPLOAD_UNKNOWN",
                "NAME_UNKNOWN",
                "DIGEST_INVALID",
            )


async def test_upload_of_another_repository_is_unknown(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{zoll.url}/v2/mine/blobs/uploads/") as r:
        upload = r.headers["Docker-Upload-UUID"]
    async with http.patch(f"{zoll.url}/v2/theirs/blobs/uploads/{upload}", data=b"x") as r:
        assert r.status == 404
        assert await error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


async def test_invalid_tag_on_push(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    image = Image.random()
    for blob in (image.config, *image.layers):
        await push_blob(http, zoll.url, "app", blob)
    r = await push_manifest(http, zoll.url, "app", "-bad", image.manifest(), mt.OCI_MANIFEST)
    assert r.status == 400
    async with http.put(
        f"{zoll.url}/v2/app/manifests/-bad",
        data=image.manifest(),
        headers={"Content-Type": mt.OCI_MANIFEST},
    ) as r:
        assert await error_codes(r) == ["TAG_INVALID"]
