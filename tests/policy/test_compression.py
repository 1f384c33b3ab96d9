"""The same buildah image read gzip-, zstd- and un-compressed analyses identically."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from policy import ImageAnalysis, analyze_image
from registry.oci import mediatypes as mt
from registry.oci.reader import OCILayoutReader
from tests.policy.layouts import Layout
from tests.support.buildah import Builder

CONTAINERFILE = (
    'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    "COPY status /var/lib/dpkg/status\n"
    "RUN mkdir -p /etc && echo 'app:x:10001:10001::/:/bin/sh' > /etc/passwd\n"
    "RUN rm /bin/vi\n"
)


def _uncompressed_copy(src: Path, dst: Path) -> None:
    """Rewrite a gzip layout with the same layers decompressed (media type `…tar`)."""
    index = json.loads((src / "index.json").read_text())
    blob = src / "blobs" / "sha256"
    manifest = json.loads((blob / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blob / manifest["config"]["digest"][7:]).read_bytes())
    layout = Layout(dst)
    layers = []
    for layer in manifest["layers"]:
        digest, size = layout.blob(gzip.decompress((blob / layer["digest"][7:]).read_bytes()))
        layers.append((digest, size, mt.OCI_LAYER))
    layout.image(layers, config)


async def _analyse(layout: Path) -> tuple[set[str], object, list[object]]:
    reader = OCILayoutReader(layout)
    analysis = await analyze_image(reader, (await reader.get_manifest("latest")).digest)
    assert analysis.complete and analysis.findings == []
    stored = json.loads(json.dumps(analysis.to_json()))
    assert ImageAnalysis.from_json(stored) == analysis  # the registry may store and reload it
    return {layer.media_type for layer in analysis.layers}, analysis.tree, analysis.packages


async def test_compressions_give_the_same_tree(tmp_path: Path) -> None:
    builder = Builder(tmp_path / "buildah")
    image = builder.build(
        "compress",
        CONTAINERFILE,
        files={"status": Path("/var/lib/dpkg/status").read_bytes()},
        layers=True,
    )
    gz, zst, plain = tmp_path / "gz", tmp_path / "zst", tmp_path / "plain"
    builder.push_oci_layout(image, gz, "latest")
    builder.run(
        "push", "--format", "oci", "--compression-format", "zstd", image, f"oci:{zst}:latest"
    )
    _uncompressed_copy(gz, plain)

    kinds, tree, packages = await _analyse(gz)
    assert kinds == {mt.OCI_LAYER_GZIP}
    assert getattr(tree, "has_passwd", False) and len(packages) > 100
    assert getattr(tree, "symlinks", 0) > 100
    for layout, media_type in ((zst, mt.OCI_LAYER_ZSTD), (plain, mt.OCI_LAYER)):
        other_kinds, other_tree, other_packages = await _analyse(layout)
        assert other_kinds == {media_type}
        assert other_tree == tree
        assert other_packages == packages
