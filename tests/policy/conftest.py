"""Fixtures for the policy tests: one buildah storage per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from registry.oci.digest import Digest
from registry.oci.reader import OCILayoutReader
from tests.support.buildah import Builder

BuildImage = Callable[..., tuple[OCILayoutReader, Digest]]


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    return Builder(tmp_path_factory.mktemp("buildah"))


@pytest.fixture(scope="session")
def build_image(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> BuildImage:
    """Build a Containerfile with buildah and return a reader over its OCI layout."""
    layouts = tmp_path_factory.mktemp("layouts")

    def build(
        name: str,
        containerfile: str,
        *,
        files: dict[str, bytes | str] | None = None,
        layers: bool = False,
        tag: str = "1.0.0",
        push_args: tuple[str, ...] = (),
    ) -> tuple[OCILayoutReader, Digest]:
        image = builder.build(name, containerfile, files=files, layers=layers)
        layout = layouts / name
        if push_args:
            builder.run("push", "--format", "oci", *push_args, image, f"oci:{layout}:{tag}")
        else:
            builder.push_oci_layout(image, layout, tag)
        reader = OCILayoutReader(layout)
        return reader, _digest_of(layout, tag)

    return build


def _digest_of(layout: Path, tag: str) -> Digest:
    import json

    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return Digest.parse(desc["digest"])
    raise LookupError(tag)
