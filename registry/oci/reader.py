"""How `attest` and `policy` read OCI content without knowing where it lives.

The registry implements `ContentReader` over its storage and database; the CLI
implements it over an OCI image layout directory or a remote registry. Verification and
analysis code takes a reader, so an auditor runs the same checks offline. Every reader
verifies digests: content that does not hash to what was asked for is never returned.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from registry.oci import mediatypes as mt
from registry.oci.descriptor import Descriptor, DescriptorError
from registry.oci.digest import Digest, DigestError, is_digest
from registry.oci.hashing import ResumableHasher
from registry.oci.manifest import ManifestError, parse_manifest

CHUNK: Final = 1 << 20
REF_NAME: Final = "org.opencontainers.image.ref.name"


class ContentNotFound(LookupError):
    """The reader has no content under that digest or tag."""


class ContentCorrupt(ValueError):
    """Content did not hash to its digest, or exceeded the size the caller allowed."""


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest's bytes with the digest they were verified against."""

    digest: Digest
    media_type: str
    raw: bytes


@runtime_checkable
class ContentReader(Protocol):
    """Read-only access to one repository's content, verified by digest."""

    async def get_manifest(self, reference: str) -> FetchedManifest:
        """A manifest by tag or digest; raises ContentNotFound."""
        ...

    def open_blob(self, digest: Digest) -> AsyncIterator[bytes]:
        """Stream a blob; raises ContentNotFound, or ContentCorrupt at the end on mismatch."""
        ...

    async def read_blob(self, digest: Digest, max_bytes: int) -> bytes:
        """A small blob (config, signature, attestation) whole, at most `max_bytes`."""
        ...

    async def referrers(
        self, subject: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """Manifests whose `subject` is `subject`, optionally filtered by artifact type."""
        ...

    async def tags(self) -> list[str]:
        """All tags (needed for the cosign `sha256-<hex>.sig` tag scheme)."""
        ...


async def read_verified(stream: AsyncIterator[bytes], digest: Digest, max_bytes: int) -> bytes:
    """Collect a stream up to `max_bytes` and check it hashes to `digest`."""
    buf = bytearray()
    async for chunk in stream:
        buf += chunk
        if len(buf) > max_bytes:
            raise ContentCorrupt(f"{digest} is larger than the {max_bytes} bytes allowed")
    if not digest.verify(bytes(buf)):
        raise ContentCorrupt(f"content of {digest} does not match its digest")
    return bytes(buf)


class OCILayoutReader:
    """A `ContentReader` over an OCI image layout directory (skopeo `oci:`, buildah push)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        index_path = root / "index.json"
        if not (root / "oci-layout").is_file() or not index_path.is_file():
            raise ContentNotFound(f"{root} is not an OCI image layout")
        self._index = json.loads(index_path.read_bytes())

    def _blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.encoded

    def _index_descriptors(self) -> list[Descriptor]:
        out = []
        for i, obj in enumerate(self._index.get("manifests", [])):
            try:
                out.append(Descriptor.from_json(obj, f"index.json manifests[{i}]"))
            except DescriptorError:
                continue
        return out

    async def get_manifest(self, reference: str) -> FetchedManifest:
        descriptors = self._index_descriptors()
        if is_digest(reference):
            try:
                digest = Digest.parse(reference)
            except DigestError as exc:
                raise ContentNotFound(str(exc)) from exc
            media_type = next((d.media_type for d in descriptors if d.digest == digest), None)
        else:
            match = [d for d in descriptors if d.annotations.get(REF_NAME) == reference]
            if not match and reference == "latest" and len(descriptors) == 1:
                match = descriptors
            if not match:
                raise ContentNotFound(f"no tag {reference!r} in {self.root}")
            digest, media_type = match[0].digest, match[0].media_type
        raw = await self.read_blob(digest, 4 * 1024 * 1024)
        if media_type is None:
            try:
                media_type = parse_manifest(raw).media_type
            except ManifestError as exc:
                raise ContentCorrupt(f"{digest} is not a manifest: {exc}") from exc
        return FetchedManifest(digest, media_type, raw)

    async def open_blob(self, digest: Digest) -> AsyncIterator[bytes]:
        path = self._blob_path(digest)
        if not path.is_file():
            raise ContentNotFound(f"blob {digest} not in {self.root}")
        hasher = ResumableHasher(digest.algorithm)
        with path.open("rb") as fh:
            while True:
                chunk = await asyncio.to_thread(fh.read, CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                yield chunk
        if hasher.digest() != digest:
            raise ContentCorrupt(f"content of {digest} does not match its digest")

    async def read_blob(self, digest: Digest, max_bytes: int) -> bytes:
        return await read_verified(self.open_blob(digest), digest, max_bytes)

    async def _all_manifests(self) -> list[Descriptor]:
        seen: dict[Digest, Descriptor] = {}
        queue = self._index_descriptors()
        while queue:
            desc = queue.pop()
            if desc.digest in seen or desc.media_type not in mt.MANIFESTS:
                continue
            seen[desc.digest] = desc
            if desc.media_type in mt.INDEXES:
                try:
                    child = parse_manifest(await self.read_blob(desc.digest, 4 << 20))
                except (ContentNotFound, ManifestError):
                    continue
                queue.extend(child.manifests)
        return list(seen.values())

    async def referrers(
        self, subject: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        out = []
        for desc in await self._all_manifests():
            manifest = parse_manifest(await self.read_blob(desc.digest, 4 << 20))
            if manifest.subject is None or manifest.subject.digest != subject:
                continue
            kind = manifest.effective_artifact_type
            if artifact_type is not None and kind != artifact_type:
                continue
            out.append(
                Descriptor(
                    manifest.media_type,
                    manifest.digest,
                    len(manifest.raw),
                    manifest.annotations,
                    kind,
                )
            )
        return out

    async def tags(self) -> list[str]:
        return sorted(
            {
                d.annotations[REF_NAME]
                for d in self._index_descriptors()
                if REF_NAME in d.annotations
            }
        )
