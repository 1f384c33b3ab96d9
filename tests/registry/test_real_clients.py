"""Unmodified OCI clients push to and pull from Zoll: buildah, skopeo, oras.

Each round trip asserts that what comes back is bit-for-bit what went in: the same
manifest digest and the same layer digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import aiohttp
import oras.client
import oras.oci
import pytest

from registry.oci import mediatypes as mt
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.servers import LiveRegistry
from tests.support.tools import layout_blob, layout_index, skopeo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    return Builder(tmp_path_factory.mktemp("buildah"))


@pytest.fixture(scope="module")
def app_image(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A real multi-layer image built offline, and an OCI layout copy of it."""
    image = builder.build(
        "zoll-test/app",
        BUSYBOX_BASE
        + "RUN mkdir -p /srv && echo 'hello from zoll' > /srv/index.html\n"
        + "RUN mkdir -p /etc && echo 'app:x:1000:1000::/srv:/bin/sh' >> /etc/passwd\nUSER 1000\n",
        layers=True,
    )
    layout = builder.push_oci_layout(image, tmp_path_factory.mktemp("src") / "layout", "v1")
    return image, layout


def _manifest_digest(layout: Path) -> str:
    return str(layout_index(layout)["manifests"][0]["digest"])


def _layers(layout: Path, digest: str) -> list[str]:
    manifest = json.loads(layout_blob(layout, digest))
    return [layer["digest"] for layer in manifest["layers"]]


async def test_skopeo_round_trip_is_bit_identical(
    zoll: LiveRegistry, app_image: tuple[str, Path], tmp_path: Path
) -> None:
    _, layout = app_image
    ref = f"docker://{zoll.host}/opendesk/app:v1"
    await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    out = tmp_path / "back"
    await skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:v1")
    original, returned = _manifest_digest(layout), _manifest_digest(out)
    assert returned == original
    assert _layers(out, returned) == _layers(layout, original)
    for digest in _layers(out, returned):
        blob = layout_blob(out, digest)
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == digest
    raw = await skopeo("inspect", "--raw", "--tls-verify=false", ref)
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == original
    tags = json.loads(
        await skopeo("list-tags", "--tls-verify=false", f"docker://{zoll.host}/opendesk/app")
    )
    assert tags["Tags"] == ["v1"]


async def test_buildah_push_then_skopeo_pull(
    zoll: LiveRegistry, builder: Builder, app_image: tuple[str, Path], tmp_path: Path
) -> None:
    image, layout = app_image
    ref = f"docker://{zoll.host}/built/app:latest"
    await builder.arun("push", "--tls-verify=false", "--format", "oci", image, ref)
    out = tmp_path / "pulled"
    await skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:latest")
    assert _layers(out, _manifest_digest(out)) == _layers(layout, _manifest_digest(layout))


async def test_multi_arch_index_round_trip(
    zoll: LiveRegistry, builder: Builder, tmp_path: Path
) -> None:
    images = []
    for arch in ("amd64", "arm64"):
        images.append(
            builder.build(
                f"zoll-test/multi-{arch}",
                f"FROM scratch\nCOPY rootfs/ /\nLABEL arch={arch}\n",
                platform=f"linux/{arch}",
            )
        )
    local = f"localhost/zoll-test/multi:{uuid.uuid4().hex[:8]}"
    await builder.arun("manifest", "create", local)
    for image in images:
        await builder.arun("manifest", "add", local, image)
    ref = f"docker://{zoll.host}/multi/app:1.0"
    await builder.arun("manifest", "push", "--all", "--tls-verify=false", local, ref)
    raw = await skopeo("inspect", "--raw", "--tls-verify=false", ref)
    index = json.loads(raw)
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    out = tmp_path / "multi"
    await skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:1.0")
    copied = layout_index(out)["manifests"][0]["digest"]
    assert copied == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    for child in index["manifests"]:
        assert (out / "blobs" / "sha256" / child["digest"].split(":")[1]).exists()
    arm = await skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", ref)
    assert json.loads(arm)["Architecture"] == "arm64"


async def test_oras_artifact_with_subject_shows_in_referrers(
    zoll: LiveRegistry, app_image: tuple[str, Path], tmp_path: Path
) -> None:
    _, layout = app_image
    ref = f"docker://{zoll.host}/opendesk/app:v1"
    await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    raw = await skopeo("inspect", "--raw", "--tls-verify=false", ref)
    manifest = json.loads(raw)
    # Not Subject.from_manifest: it re-serialises the JSON and gets another digest.
    subject = oras.oci.Subject(
        mt.OCI_MANIFEST, "sha256:" + hashlib.sha256(raw.encode()).hexdigest(), len(raw)
    )
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}))
    client = oras.client.OrasClient(hostname=zoll.host, insecure=True)

    def push() -> None:
        client.push(
            target=f"{zoll.host}/opendesk/app:sbom",
            files=[f"{sbom}:application/vnd.cyclonedx+json"],
            subject=subject,
            disable_path_validation=True,
            do_chunked=True,
            chunk_size=16,
            quiet=True,
        )

    await asyncio.to_thread(push)
    found = await asyncio.to_thread(
        client.get_manifest, f"{zoll.host}/opendesk/app@{subject.digest}"
    )
    assert found["config"]["digest"] == manifest["config"]["digest"]

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{zoll.url}/v2/opendesk/app/referrers/{subject.digest}") as r,
    ):
        index = await r.json(content_type=None)
    assert len(index["manifests"]) == 1
    assert index["manifests"][0]["mediaType"] == mt.OCI_MANIFEST
    pulled = await asyncio.to_thread(
        client.pull, target=f"{zoll.host}/opendesk/app:sbom", outdir=str(tmp_path / "out")
    )
    assert Path(pulled[0]).read_text() == sbom.read_text()
