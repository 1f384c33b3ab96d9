"""Reading and writing the registry's content from inside the service.

`RegistryReader` is the `ContentReader` that `attest` and `policy` use on stored images;
`store_blobs` and `store_manifest` are how the service itself adds content (attestations it
signs, images it mirrors). HTTP pushes go through `store_manifest` too, so everything that
must happen after a manifest lands (the pipeline noticing it) happens in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from registry.db import blobs as blob_rows
from registry.db import manifests as manifest_rows
from registry.http.state import Registry
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest, DigestError, is_digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.hashing import ResumableHasher
from registry.oci.manifest import Manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, FetchedManifest, read_verified
from registry.storage.base import BlobMissing

ManifestHook = Callable[[Registry, str, Manifest, list[str], bool], Awaitable[None]]
_HOOKS: list[ManifestHook] = []


def on_manifest_stored(hook: ManifestHook) -> ManifestHook:
    """Register `hook(registry, repository, manifest, tags, external)`, called after every
    stored manifest; `external` is False for content the service wrote itself."""
    _HOOKS.append(hook)
    return hook


class RegistryReader:
    """A `ContentReader` over one repository of this registry; every byte is verified."""

    def __init__(self, registry: Registry, repository: str) -> None:
        self.registry = registry
        self.repository = repository

    async def get_manifest(self, reference: str) -> FetchedManifest:
        by_digest = is_digest(reference)
        if by_digest:
            try:
                reference = str(Digest.parse(reference))
            except DigestError as exc:
                raise ContentNotFound(str(exc)) from exc
        stored = await manifest_rows.get(
            self.registry.pool, self.repository, reference, by_digest=by_digest
        )
        if stored is None:
            raise ContentNotFound(f"{self.repository}: no manifest {reference}")
        if not stored.digest.verify(stored.content):
            raise ContentCorrupt(f"stored manifest {stored.digest} does not match its digest")
        return FetchedManifest(stored.digest, stored.media_type, stored.content)

    async def open_blob(self, digest: Digest) -> AsyncIterator[bytes]:
        info = await blob_rows.in_repository(self.registry.pool, self.repository, digest)
        if info is None:
            raise ContentNotFound(f"{self.repository}: no blob {digest}")
        hasher = ResumableHasher(digest.algorithm)
        try:
            async for chunk in self.registry.driver.read(info.storage_key):
                hasher.update(chunk)
                yield chunk
        except BlobMissing as exc:
            raise ContentNotFound(f"bytes of {digest} are missing from storage") from exc
        if hasher.digest() != digest:
            raise ContentCorrupt(f"stored blob {digest} does not match its digest")

    async def read_blob(self, digest: Digest, max_bytes: int) -> bytes:
        info = await blob_rows.in_repository(self.registry.pool, self.repository, digest)
        if info is not None and info.size > max_bytes:
            raise ContentCorrupt(f"{digest} is larger than the {max_bytes} bytes allowed")
        return await read_verified(self.open_blob(digest), digest, max_bytes)

    async def referrers(
        self, subject: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        rows = await manifest_rows.referrers(
            self.registry.pool, self.repository, subject, artifact_type
        )
        return [Descriptor.from_json(r, "referrer") for r in rows]

    async def tags(self) -> list[str]:
        tags = await manifest_rows.tag_page(self.registry.pool, self.repository, None, 100_000)
        return tags or []


async def store_blobs(registry: Registry, repository: str, contents: list[bytes]) -> list[Digest]:
    """Store small content the service produced (attestations, configs) in a repository:
    what Zoll stores already is linked in one transaction, the rest published in another."""
    digests = [Digest.of(data) for data in contents]
    linked = await blob_rows.link_stored_many(registry.pool, repository, list(set(digests)))
    new = [data for digest, data in zip(digests, contents, strict=True) if digest not in linked]
    if new:
        await registry.uploads.store_many(repository, new)
    return digests


async def store_manifest(
    registry: Registry,
    repository: str,
    manifest: Manifest,
    tags: list[str],
    *,
    request_id: str | None = None,
    external: bool = True,
) -> None:
    """Store a validated manifest (refusing it if referenced content is missing) and tell
    the hooks. Raises RegistryError(MANIFEST_BLOB_UNKNOWN) naming everything missing."""
    await store_manifests(
        registry, repository, [(manifest, tags)], request_id=request_id, external=external
    )


async def store_manifests(
    registry: Registry,
    repository: str,
    items: Sequence[tuple[Manifest, list[str]]],
    *,
    request_id: str | None = None,
    external: bool = True,
) -> None:
    """Store several manifests (each with its tags) in one transaction: all or none, in
    order, so that later ones may refer to earlier ones. Then tell the hooks of each."""
    missing = await manifest_rows.put_many(registry.pool, repository, items, request_id)
    if missing:
        raise RegistryError(
            ErrorCode.MANIFEST_BLOB_UNKNOWN,
            detail={
                "missing": [
                    {"kind": m.kind, "digest": m.digest, "reason": m.reason} for m in missing
                ]
            },
        )
    for manifest, tags in items:
        for hook in _HOOKS:
            await hook(registry, repository, manifest, tags, external)
