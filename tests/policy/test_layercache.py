"""A warm layer cache changes how fast an image is analysed, never what the analysis says."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from policy.analyzer import LayerCache, analyze_image
from registry.oci.digest import Digest
from registry.oci.reader import FetchedManifest, OCILayoutReader
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.tools import layout_index

KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    report = dict(report)
    report.pop("seconds", None)
    return report


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[OCILayoutReader, Digest, Digest]:
    builder = Builder(tmp_path_factory.mktemp("buildah"))
    status = Path("/var/lib/dpkg/status").read_bytes()
    base = BUSYBOX_BASE + "COPY status /var/lib/dpkg/status\nCOPY id_key /root/.ssh/id_ed25519\n"
    files = {"status": status, "id_key": KEY}
    layout = tmp_path_factory.mktemp("layout") / "l"
    first = builder.build("cache/a", base + "RUN echo a > /a\n", files=files, layers=True)
    # The second image shares every base layer, then deletes the key and the package db.
    second = builder.build(
        "cache/b",
        base + "RUN rm /root/.ssh/id_ed25519 /var/lib/dpkg/status\n",
        files=files,
        layers=True,
    )
    builder.push_oci_layout(first, layout, "a")
    builder.push_oci_layout(second, layout, "b")
    refs = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in layout_index(layout)["manifests"]
    }
    return OCILayoutReader(layout), Digest.parse(refs["a"]), Digest.parse(refs["b"])


async def test_cached_layers_give_the_same_analysis(
    images: tuple[OCILayoutReader, Digest, Digest],
) -> None:
    reader, a, b = images
    cold_a = (await analyze_image(reader, a)).to_json()
    cold_b = (await analyze_image(reader, b)).to_json()
    cache = LayerCache()
    warm_a = (await analyze_image(reader, a, cache=cache)).to_json()
    misses = cache.misses
    warm_b = (await analyze_image(reader, b, cache=cache)).to_json()
    assert cache.hits >= 3  # the shared base layers were not read again
    assert cache.misses == misses + 1  # only b's own layer was
    assert _comparable(warm_a) == _comparable(cold_a)
    assert _comparable(warm_b) == _comparable(cold_b)
    # The facts that make the difference survived the replay: packages only in a,
    # the key a secret in both, but present in a's final tree and deleted in b's.
    assert warm_a["packages"] and not warm_b["packages"]
    secrets_b = [f for f in warm_b["findings"] if f["kind"] == "secret"]
    assert secrets_b and all("deleted later" in f["detail"]["in_final_tree"] for f in secrets_b)


async def test_cache_is_bounded() -> None:
    cache = LayerCache(max_entries=10)
    from policy.analyzer.layercache import CachedLayer
    from policy.analyzer.tarstream import TarEntry

    entry = TarEntry("f", "file", 0o644, 0, 0, 1)
    for i in range(5):
        cache.put(f"layer{i}", CachedLayer((entry,) * 4, (), (), 4))
    assert cache.get("layer0") is None and cache.get("layer1") is None
    assert cache.get("layer4") is not None
    cache.put("huge", CachedLayer((entry,) * 11, (), (), 11))
    assert cache.get("huge") is None


async def test_many_images_analysed_at_once_never_starve_their_own_reads(
    images: tuple[OCILayoutReader, Digest, Digest],
) -> None:
    """More analyses at once than the loop's default executor has threads: each parser
    waits for chunks its reader fetches with `to_thread`; none may wait forever."""
    reader, a, b = images
    expected = _comparable((await analyze_image(reader, a)).to_json())
    many = 4 * ((os.cpu_count() or 1) + 4)  # the default executor has min(32, cpus + 4)
    results = await asyncio.wait_for(
        asyncio.gather(*(analyze_image(reader, a if n % 2 else b) for n in range(many))),
        timeout=120,
    )
    assert [_comparable(r.to_json()) for r in results[1::2]] == [expected] * (many // 2)


class CountingReader:
    """An OCI layout reader that counts how often each blob is streamed."""

    def __init__(self, inner: OCILayoutReader) -> None:
        self.inner = inner
        self.opened: Counter[str] = Counter()

    async def get_manifest(self, reference: str) -> FetchedManifest:
        return await self.inner.get_manifest(reference)

    async def read_blob(self, digest: Digest, max_bytes: int) -> bytes:
        return await self.inner.read_blob(digest, max_bytes)

    def open_blob(self, digest: Digest) -> AsyncIterator[bytes]:
        self.opened[str(digest)] += 1
        return self.inner.open_blob(digest)


async def test_images_judged_together_read_each_shared_layer_once(
    images: tuple[OCILayoutReader, Digest, Digest],
) -> None:
    layout, a, b = images
    expected = {d: _comparable((await analyze_image(layout, d)).to_json()) for d in (a, b)}
    reader = CountingReader(layout)
    cache = LayerCache()
    wanted = [a, b] * 6
    results = await asyncio.gather(*(analyze_image(reader, d, cache=cache) for d in wanted))
    assert [_comparable(r.to_json()) for r in results] == [expected[d] for d in wanted]
    layers = {layer["digest"] for r in results for layer in r.to_json()["layers"]}
    assert reader.opened and set(reader.opened) == layers
    assert all(n == 1 for n in reader.opened.values()), reader.opened
