"""A proxy that flips one byte: the client raises a specific digest error and hands
nothing to the caller as valid."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from registry.oci.client import (
    DigestMismatch,
    Limits,
    RegistryClient,
    RegistryConfig,
    RemoteReader,
    SizeExceeded,
)
from registry.oci.digest import Digest
from registry.oci.reader import ContentCorrupt
from tests.oci_client.conftest import FAST_RETRY, Seeded
from tests.oci_client.faults import Fault, FaultProxy

MANIFEST = r"/v2/library/app/manifests/.*"


async def _layer(client: RegistryClient, proxy: FaultProxy) -> tuple[Digest, int]:
    fetched = await client.repository(proxy.host, "library/app").get_manifest("v1")
    layer = json.loads(fetched.raw)["layers"][-1]
    return Digest.parse(layer["digest"]), layer["size"]


async def test_flipped_blob_byte_fails_the_stream_read_and_download(
    anon: Seeded, proxy: FaultProxy, client: RegistryClient, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    digest = Digest.of(data)
    await client.repository(anon.registry.host, "library/flip").push_blob(data, digest, len(data))
    repo = client.repository(proxy.host, "library/flip")
    blob = rf"/v2/library/flip/blobs/{digest}"
    proxy.add(Fault("GET", blob, flip_at=123_456, times=3))

    seen = bytearray()
    with pytest.raises(DigestMismatch) as streamed:
        async for chunk in repo.open_blob(digest):
            seen += chunk
    assert streamed.value.expected == digest and streamed.value.actual == Digest.of(bytes(seen))
    assert len(seen) == len(data)  # the stream ran to the end, then refused

    with pytest.raises(DigestMismatch):
        await repo.read_blob(digest, len(data))

    target = tmp_path / "blob"
    with pytest.raises(DigestMismatch):
        await repo.download_blob(digest, target)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one is left

    assert await repo.read_blob(digest, len(data)) == data  # the proxy behaves again


async def test_flipped_manifest_byte_by_digest_and_by_tag(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    repo = client.repository(proxy.host, "library/app")
    good = await repo.get_manifest("v1")
    proxy.add(Fault("GET", MANIFEST, flip_at=40, times=2))
    with pytest.raises(DigestMismatch) as by_digest:
        await repo.get_manifest(str(good.digest))
    assert by_digest.value.expected == good.digest
    # By tag there is no digest to ask for, but the registry announced one.
    with pytest.raises(DigestMismatch) as by_tag:
        await repo.get_manifest("v1")
    assert by_tag.value.expected == good.digest


async def test_remote_reader_reports_corruption_as_content_corrupt(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    digest, size = await _layer(client, proxy)
    reader = RemoteReader(client.repository(proxy.host, "library/app"))
    proxy.add(Fault("GET", rf"/v2/library/app/blobs/{digest}", flip_at=size // 2))
    with pytest.raises(ContentCorrupt):
        await reader.read_blob(digest, size)


async def test_manifest_size_limit(anon: Seeded) -> None:
    async with RegistryClient(
        [RegistryConfig(anon.registry.host, insecure=True)],
        retry=FAST_RETRY,
        limits=Limits(max_manifest_bytes=100),
    ) as small:
        with pytest.raises(SizeExceeded, match="larger than the 100 bytes allowed"):
            await small.repository(anon.registry.host, "library/app").get_manifest("v1")


async def test_blob_longer_than_its_descriptor_is_cut_off(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    digest, size = await _layer(client, proxy)
    repo = client.repository(proxy.host, "library/app")
    with pytest.raises(ContentCorrupt, match=f"expected {size - 1} bytes"):
        async for _ in repo.open_blob(digest, size=size - 1):
            pass
