"""Copy one image, with everything attached to it, from any `ContentReader` into Zoll.

Blobs Zoll already stores (in any repository) are linked, never fetched again; blobs are
copied several at a time; a blob two copies need at once is fetched once. Every byte is
verified against its digest by the upload engine before it becomes visible, so a
tampered upstream can at worst fail the copy, never plant content. Signatures and
attestations come along in both layouts (OCI referrers and cosign tags), because
`skopeo copy` dropping them is what makes mirrored images unverifiable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from attest.cosign import discover
from registry.content import store_manifest
from registry.db import blobs as blob_rows
from registry.http.state import Registry
from registry.oci import mediatypes as mt
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.manifest import Manifest, parse_manifest
from registry.oci.reader import ContentReader, read_verified

FETCH_POLL = 0.025
"""How often a copy waiting for another process's fetch of the same blob looks again."""
SMALL_BLOB = 64 * 1024
SMALL_BATCH = 16
"""Blobs up to SMALL_BLOB (configs, signatures, attestations) are copied SMALL_BATCH at a
time, held in memory, one transaction for all of them."""


class CopyProgress(Protocol):
    """What a copy tells its observer (the CLI draws progress bars from it)."""

    def blob_started(self, digest: Digest, size: int) -> None: ...
    def blob_advanced(self, digest: Digest, nbytes: int) -> None: ...
    def blob_finished(self, digest: Digest, fetched: bool) -> None: ...


class NoProgress:
    def blob_started(self, digest: Digest, size: int) -> None:
        return None

    def blob_advanced(self, digest: Digest, nbytes: int) -> None:
        return None

    def blob_finished(self, digest: Digest, fetched: bool) -> None:
        return None


@dataclass
class CopyResult:
    """What one image copy did: the digest stored, bytes fetched, blobs reused."""

    digest: Digest
    manifests: int = 0
    blobs_fetched: int = 0
    blobs_reused: int = 0
    bytes_fetched: int = 0
    attachments: list[str] = field(default_factory=list)


class _StreamSource:
    """Adapts a blob stream to the upload engine's `readany()` and reports progress.
    Every `ContentReader` stream raises at its end when the bytes do not hash to the
    digest, so the upload takes it as a `VerifyingSource` and does not hash them again."""

    def __init__(self, stream: AsyncIterator[bytes], digest: Digest, progress: CopyProgress):
        self._stream = stream
        self.verifies = digest
        self._progress = progress
        self.received = 0

    async def readany(self) -> bytes:
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            return b""
        self.received += len(chunk)
        self._progress.blob_advanced(self.verifies, len(chunk))
        return chunk


class Copier:
    """Copies into one Zoll; share it between concurrent copies so blobs are fetched once."""

    def __init__(
        self, registry: Registry, *, parallel: int = 4, progress: CopyProgress | None = None
    ) -> None:
        self.registry = registry
        self.progress = progress or NoProgress()
        self._slots = asyncio.Semaphore(parallel)
        self._inflight: dict[Digest, asyncio.Future[bool]] = {}

    async def blobs(
        self,
        source: ContentReader,
        repository: str,
        descs: Sequence[Descriptor],
        result: CopyResult,
    ) -> None:
        """Make `descs` present in `repository`: one statement links those Zoll stores in
        any repository; the rest are fetched, several at a time."""
        wanted = list({d.digest: d for d in descs}.values())
        linked = await blob_rows.link_stored_many(
            self.registry.pool, repository, [d.digest for d in wanted]
        )
        for digest in linked:
            result.blobs_reused += 1
            self.progress.blob_finished(digest, fetched=False)
        todo = [d for d in wanted if d.digest not in linked]
        small = [d for d in todo if d.size <= SMALL_BLOB and d.digest not in self._inflight]
        await asyncio.gather(
            self._small_blobs(source, repository, small, result),
            *(self.blob(source, repository, d, result) for d in todo if d not in small),
        )

    async def _small_blobs(
        self, source: ContentReader, repository: str, descs: list[Descriptor], result: CopyResult
    ) -> None:
        """Configs and other small blobs: fetched into memory and verified, then stored in
        one batch (one transaction for all instead of one each)."""
        for start in range(0, len(descs), SMALL_BATCH):
            await self._small_batch(source, repository, descs[start : start + SMALL_BATCH], result)

    async def _small_batch(
        self, source: ContentReader, repository: str, descs: list[Descriptor], result: CopyResult
    ) -> None:
        loop = asyncio.get_running_loop()
        futures = {d.digest: loop.create_future() for d in descs}
        self._inflight.update(futures)
        try:
            async with self._slots:
                contents = await asyncio.gather(
                    *(read_verified(source.open_blob(d.digest), d.digest, d.size) for d in descs)
                )
            for desc, data in zip(descs, contents, strict=True):
                if len(data) != desc.size:
                    raise RegistryError(
                        ErrorCode.SIZE_INVALID,
                        f"{desc.digest} is {len(data)} bytes, the manifest says {desc.size}",
                    )
            await self.registry.uploads.store_many(repository, contents)
            for desc in descs:
                result.blobs_fetched += 1
                result.bytes_fetched += desc.size
                self.progress.blob_finished(desc.digest, fetched=True)
                futures[desc.digest].set_result(True)
        except BaseException as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # waiting copies see it; do not warn about it here
            raise
        finally:
            for digest in futures:
                self._inflight.pop(digest, None)

    async def blob(
        self, source: ContentReader, repository: str, desc: Descriptor, result: CopyResult
    ) -> None:
        """Fetch `desc` into `repository`, or wait for the copy fetching it right now: in
        this process (a shared future) or in another worker process (a PostgreSQL lock
        held while fetching), then link what it stored."""
        pending = self._inflight.get(desc.digest)
        if pending is not None:  # another copy is fetching it right now: wait and link
            await asyncio.shield(pending)
            if await self._reuse(repository, desc.digest, result):
                return
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[desc.digest] = future
        try:
            while not await self._fetch_once(source, repository, desc, result):
                await asyncio.sleep(FETCH_POLL)  # another process fetches it: look again
                if await self._reuse(repository, desc.digest, result):
                    break
            future.set_result(True)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # waiting copies see it; do not warn about it here
            raise
        finally:
            self._inflight.pop(desc.digest, None)

    async def _reuse(self, repository: str, digest: Digest, result: CopyResult) -> bool:
        if await blob_rows.link_stored(self.registry.pool, repository, digest) is None:
            return False
        result.blobs_reused += 1
        self.progress.blob_finished(digest, fetched=False)
        return True

    async def _fetch_once(
        self, source: ContentReader, repository: str, desc: Descriptor, result: CopyResult
    ) -> bool:
        """Fetch and store `desc` under its fetch lock, unless it was stored by the time the
        lock was ours; False when another process holds the lock (it is fetching it)."""
        async with (
            self._slots,
            self.registry.pool.acquire() as conn,
            blob_rows.fetch_lock(conn, desc.digest) as mine,
        ):
            if not mine:
                return False
            if await self._reuse(repository, desc.digest, result):
                return True  # another process stored it between our lookup and the lock
            self.progress.blob_started(desc.digest, desc.size)
            body = _StreamSource(source.open_blob(desc.digest), desc.digest, self.progress)
            info = await self.registry.uploads.monolithic(repository, desc.digest, body)
        if info.size != desc.size:
            raise RegistryError(
                ErrorCode.SIZE_INVALID,
                f"{desc.digest} is {info.size} bytes, the manifest says {desc.size}",
            )
        result.blobs_fetched += 1
        result.bytes_fetched += body.received
        self.progress.blob_finished(desc.digest, fetched=True)
        return True

    async def manifest(
        self,
        source: ContentReader,
        repository: str,
        reference: str,
        *,
        tags: Sequence[str] = (),
        platforms: Sequence[str] = (),
        attachments: bool = True,
        result: CopyResult | None = None,
        external: bool = True,
    ) -> CopyResult:
        """Copy the manifest `reference` (tag or digest) and everything under it.
        `external` False marks content Zoll made itself (it does not enter the pipeline)."""
        fetched = await source.get_manifest(reference)
        manifest = parse_manifest(fetched.raw, fetched.media_type)
        result = result or CopyResult(manifest.digest)
        if manifest.is_index:
            wanted = [d for d in manifest.manifests if _platform_wanted(d, platforms)]
            for child in wanted:
                await self.manifest(
                    source,
                    repository,
                    str(child.digest),
                    attachments=attachments,
                    result=result,
                    external=external,
                )
            if len(wanted) != len(manifest.manifests):
                manifest = _filtered_index(manifest, wanted)
        else:
            await self.blobs(source, repository, manifest.blob_references(), result)
        await store_manifest(self.registry, repository, manifest, list(tags), external=external)
        result.manifests += 1
        if attachments and result.digest == manifest.digest:
            await self._attachments(source, repository, fetched.digest, result)
        return result

    async def _attachments(
        self, source: ContentReader, repository: str, subject: Digest, result: CopyResult
    ) -> None:
        """Signatures, attestations and SBOMs of `subject`, in both layouts."""
        seen: set[str] = set()
        for attached in await discover(source, subject):
            key = f"{attached.digest}:{attached.tag or ''}"
            if key in seen:
                continue
            seen.add(key)
            tags = [attached.tag] if attached.tag else []
            await self.manifest(
                source,
                repository,
                str(attached.digest),
                tags=tags,
                attachments=False,
                result=CopyResult(attached.digest),
            )
            result.attachments.append(attached.tag or str(attached.digest))


def _platform_wanted(desc: Descriptor, platforms: Sequence[str]) -> bool:
    if not platforms or desc.platform is None:
        return True
    plat = desc.platform
    name = f"{plat.get('os')}/{plat.get('architecture')}"
    variant = plat.get("variant")
    return name in platforms or (variant is not None and f"{name}/{variant}" in platforms)


def _filtered_index(index: Manifest, keep: list[Descriptor]) -> Manifest:
    """The index with only the wanted platforms (it gets a new digest: it is new content)."""
    body = index.json()
    body["manifests"] = [d.to_json() for d in keep]
    body.setdefault(
        "mediaType",
        index.media_type if index.media_type == mt.OCI_INDEX else mt.DOCKER_MANIFEST_LIST,
    )
    raw = json.dumps(body, separators=(",", ":")).encode()
    return parse_manifest(raw, index.media_type)
