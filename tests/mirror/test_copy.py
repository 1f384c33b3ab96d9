"""Copying images into Zoll keeps every digest, brings signatures and attestations along,
never fetches a blob twice, and refuses content that does not match its digest."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from attest.keys import PrivateKey
from registry.mirror.copy import SMALL_BLOB, Copier
from registry.oci.digest import Digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.reader import ContentCorrupt, OCILayoutReader
from tests.attest_verify.cosign_writer import CosignWriter, LayoutSink
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.servers import LiveRegistry
from tests.support.tools import layout_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def signed_layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Digest]:
    builder = Builder(tmp_path_factory.mktemp("buildah"))
    image = builder.build("mirror/app", BUSYBOX_BASE + "RUN echo upstream > /u.txt\n", layers=True)
    layout = builder.push_oci_layout(image, tmp_path_factory.mktemp("up") / "layout", "2.0")
    digest = Digest.parse(layout_index(layout)["manifests"][0]["digest"])
    writer = CosignWriter(LayoutSink(layout))
    key = PrivateKey.generate()
    writer.sign(digest, key)
    writer.attest(digest, key, "https://slsa.dev/provenance/v1", {"builder": {"id": "x"}})
    return layout, digest


async def test_copy_keeps_digests_and_attachments(
    zoll: LiveRegistry, http: aiohttp.ClientSession, signed_layout: tuple[Path, Digest]
) -> None:
    layout, digest = signed_layout
    source = OCILayoutReader(layout)
    blobs = 1 + len(
        json.loads((layout / "blobs" / "sha256" / digest.encoded).read_bytes())["layers"]
    )
    result = await Copier(zoll.registry).manifest(source, "mirror/app", "2.0", tags=["2.0"])
    assert result.digest == digest
    assert result.blobs_fetched == blobs and result.blobs_reused == 0
    assert sorted(result.attachments) == [
        f"sha256-{digest.encoded}.att",
        f"sha256-{digest.encoded}.sig",
    ]
    async with http.get(f"{zoll.url}/v2/mirror/app/manifests/2.0") as r:
        assert r.headers["Docker-Content-Digest"] == str(digest)
    async with http.get(f"{zoll.url}/v2/mirror/app/tags/list") as r:
        tags = (await r.json())["tags"]
    assert f"sha256-{digest.encoded}.sig" in tags and f"sha256-{digest.encoded}.att" in tags

    # Copying again, or into another repository, fetches nothing.
    again = await Copier(zoll.registry).manifest(source, "other/app", "2.0", tags=["2.0"])
    assert again.blobs_fetched == 0 and again.blobs_reused == blobs and again.bytes_fetched == 0


async def test_concurrent_copies_fetch_each_blob_once(
    zoll: LiveRegistry, signed_layout: tuple[Path, Digest]
) -> None:
    layout, digest = signed_layout
    blobs = 1 + len(
        json.loads((layout / "blobs" / "sha256" / digest.encoded).read_bytes())["layers"]
    )
    copier = Copier(zoll.registry, parallel=8)
    results = await asyncio.gather(
        *(
            copier.manifest(OCILayoutReader(layout), f"team{i}/app", "2.0", attachments=False)
            for i in range(4)
        )
    )
    assert sum(r.blobs_fetched for r in results) == blobs
    assert sum(r.blobs_reused for r in results) == 3 * blobs


class FetchLog:
    """A copy's progress reporter that remembers which blobs it fetched."""

    def __init__(self) -> None:
        self.fetched: list[Digest] = []

    def blob_started(self, digest: Digest, size: int) -> None:
        pass

    def blob_advanced(self, digest: Digest, nbytes: int) -> None:
        pass

    def blob_finished(self, digest: Digest, fetched: bool) -> None:
        if fetched:
            self.fetched.append(digest)


async def test_copies_in_different_worker_processes_fetch_a_layer_once(
    zoll: LiveRegistry, signed_layout: tuple[Path, Digest]
) -> None:
    """Each worker process has its own copier: a layer two of them need at the same time
    is fetched by one (under a PostgreSQL lock) and linked by the others."""
    layout, digest = signed_layout
    manifest = json.loads((layout / "blobs" / "sha256" / digest.encoded).read_bytes())
    streamed = {Digest.parse(d["digest"]) for d in manifest["layers"] if d["size"] > SMALL_BLOB}
    assert streamed, "the image has a layer big enough to be streamed"
    logs = [FetchLog() for _ in range(4)]
    await asyncio.gather(
        *(
            Copier(zoll.registry, progress=log).manifest(
                OCILayoutReader(layout), f"worker{i}/app", "2.0", attachments=False
            )
            for i, log in enumerate(logs)
        )
    )
    fetched = [d for log in logs for d in log.fetched if d in streamed]
    assert sorted(fetched) == sorted(streamed)


class _Claiming:
    """A body that says it verifies `verifies` (as a mirrored stream does) but does not."""

    def __init__(self, data: bytes, verifies: Digest) -> None:
        self._chunks = [data[: len(data) // 2], data[len(data) // 2 :]]
        self.verifies = verifies

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


async def test_upload_hashes_what_its_source_does_not_verify(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """Mirrored streams are hashed once, by the reader; a body whose claim is about
    another digest is hashed by the upload and refused when the bytes differ."""
    data, other = os.urandom(3 << 20), os.urandom(64)
    wanted, claimed = Digest.of(other), Digest.of(data)
    with pytest.raises(RegistryError) as refused:
        await zoll.registry.uploads.monolithic("claims/app", wanted, _Claiming(data, claimed))
    assert refused.value.code is ErrorCode.DIGEST_INVALID
    async with http.head(f"{zoll.url}/v2/claims/app/blobs/{wanted}") as r:
        assert r.status == 404
    stored = await zoll.registry.uploads.monolithic("claims/app", claimed, _Claiming(data, claimed))
    assert stored.size == len(data)
    async with http.get(f"{zoll.url}/v2/claims/app/blobs/{claimed}") as r:
        assert r.status == 200 and await r.read() == data


@pytest.mark.parametrize("which", ["layer", "config"])  # streamed, and copied in a batch
async def test_tampered_upstream_blob_is_refused(
    zoll: LiveRegistry,
    http: aiohttp.ClientSession,
    signed_layout: tuple[Path, Digest],
    tmp_path: Path,
    which: str,
) -> None:
    layout, digest = signed_layout
    tampered = tmp_path / "tampered"
    shutil.copytree(layout, tampered)
    manifest = json.loads((tampered / "blobs" / "sha256" / digest.encoded).read_bytes())
    largest = max(manifest["layers"], key=lambda d: d["size"])
    target = largest if which == "layer" else manifest["config"]
    assert (target["size"] > SMALL_BLOB) == (which == "layer")
    layer = target["digest"].split(":")[1]
    blob = tampered / "blobs" / "sha256" / layer
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ContentCorrupt):
        await Copier(zoll.registry).manifest(OCILayoutReader(tampered), "evil/app", "2.0")
    async with http.get(f"{zoll.url}/v2/evil/app/manifests/2.0") as r:
        assert r.status == 404
    async with http.head(f"{zoll.url}/v2/evil/app/blobs/sha256:{layer}") as r:
        assert r.status == 404
