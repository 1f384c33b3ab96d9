"""Base images come from Zoll, never from the network.

A `BaseResolver` finds the reader that holds a base image by name and digest (the
registry maps the name to its mirror repository; the CLI searches OCI layouts). The
image is then exported, digest-verified, into a small OCI layout that the builder
imports into its private storage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader


class BaseImageMissing(Exception):
    """A base image (or one of its blobs) is not in Zoll."""


class BaseResolver(Protocol):
    """Where base images live."""

    async def find(self, repository: str, digest: Digest) -> ContentReader | None:
        """A reader holding `digest` for `repository` (`docker.io/library/alpine`), or None."""
        ...


class LayoutBases:
    """Base images from OCI layout directories (offline CLI use, tests)."""

    def __init__(self, readers: Sequence[ContentReader]) -> None:
        self.readers = list(readers)

    async def find(self, repository: str, digest: Digest) -> ContentReader | None:
        for reader in self.readers:
            try:
                await reader.get_manifest(str(digest))
            except (ContentNotFound, ContentCorrupt):
                continue
            return reader
        return None


async def _write_blob(reader: ContentReader, digest: Digest, layout: Path) -> None:
    target = layout / "blobs" / digest.algorithm / digest.encoded
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{digest.encoded}.partial")
    with partial.open("wb") as fh:
        async for chunk in reader.open_blob(digest):
            await asyncio.to_thread(fh.write, chunk)
    partial.replace(target)


def _platform_matches(platform: dict[str, object] | None, wanted: str) -> bool:
    os_name, _, rest = wanted.partition("/")
    arch, _, variant = rest.partition("/")
    plat = platform or {}
    return (
        plat.get("os") == os_name
        and plat.get("architecture") == arch
        and (not variant or plat.get("variant") == variant)
    )


async def _export_manifest(
    reader: ContentReader, digest: Digest, layout: Path, platform: str, depth: int = 0
) -> str:
    fetched = await reader.get_manifest(str(digest))
    try:
        manifest = parse_manifest(fetched.raw, fetched.media_type)
    except ManifestError as exc:
        raise BaseImageMissing(f"{digest} is not a usable manifest: {exc}") from exc
    if manifest.is_index:
        children = [d for d in manifest.manifests if _platform_matches(d.platform, platform)]
        if not children or depth > 0:
            raise BaseImageMissing(f"the index {digest} has no {platform} image")
        for child in children:
            await _export_manifest(reader, child.digest, layout, platform, depth + 1)
    elif manifest.media_type in mt.IMAGE_MANIFESTS:
        for blob in manifest.blob_references():
            await _write_blob(reader, blob.digest, layout)
    else:
        raise BaseImageMissing(f"{digest} is not an image ({manifest.media_type})")
    target = layout / "blobs" / digest.algorithm / digest.encoded
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(fetched.raw)
    return manifest.media_type


async def export_image(
    reader: ContentReader, digest: Digest, layout: Path, *, tag: str, platform: str
) -> None:
    """Write `digest` (an image, or an index with its `platform` image) as an OCI layout.

    Raises BaseImageMissing when the manifest or any blob is not in `reader`.
    """
    await asyncio.to_thread(layout.mkdir, parents=True, exist_ok=True)
    try:
        media_type = await _export_manifest(reader, digest, layout, platform)
    except (ContentNotFound, ContentCorrupt) as exc:
        raise BaseImageMissing(str(exc)) from exc
    await asyncio.to_thread(_write_index, layout, digest, media_type, tag)


def _write_index(layout: Path, digest: Digest, media_type: str, tag: str) -> None:
    raw = (layout / "blobs" / digest.algorithm / digest.encoded).read_bytes()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": str(digest),
                "size": len(raw),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
