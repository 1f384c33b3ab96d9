"""Blob uploads: monolithic (POST + PUT) and chunked (POST + PATCH… + PUT), with mounts.

Uploads are not idempotent, so a failure is never answered by sending the same request
blindly. After a failed PATCH we ask the registry how much it has (GET on the upload
URL, `Range: 0-<last>`) and continue from there with the part of the chunk still in
memory; after a failed final PUT we ask whether the blob exists (the PUT may have landed
and only its answer been lost). Only a source that can be read again (bytes, or an
opener that streams from an offset) is uploaded anew in a fresh session.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import quote

import aiohttp
from yarl import URL

from registry.oci.client import scopes as sc
from registry.oci.client.errors import (
    ClientError,
    DigestMismatch,
    NotFoundError,
    ProtocolError,
    RegistryResponseError,
    TransportError,
)
from registry.oci.client.transport import raise_for_response
from registry.oci.digest import Digest, DigestError

if TYPE_CHECKING:
    from registry.oci.client.transport import Transport

log = logging.getLogger("registry.oci.client")

BlobOpener = Callable[[int], AsyncIterator[bytes]]
"""Streams a blob's content from a byte offset; lets an upload restart or resume."""
BlobSource = bytes | BlobOpener | AsyncIterable[bytes]
"""What to upload: bytes, an opener, or a stream that can be read only once."""
_RANGE: Final = re.compile(r"^(?:bytes=)?0-(\d+)$")
OCTET: Final = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class PushedBlob:
    digest: Digest
    size: int
    how: Literal["existing", "mounted", "uploaded"]


class _UploadLost(ClientError):
    """The upload session cannot be continued; only starting over can help."""


def _with_digest(location: URL, digest: Digest) -> URL:
    text = str(location)
    joiner = "&" if "?" in text else "?"
    return URL(f"{text}{joiner}digest={quote(str(digest), safe='')}", encoded=True)


def _location(resp: aiohttp.ClientResponse) -> URL:
    value = resp.headers.get("Location")
    if not value:
        raise ProtocolError(f"{resp.method} {resp.url}: HTTP {resp.status} without Location")
    target = URL(value, encoded=True)
    return target if target.is_absolute() else resp.url.join(target)


def _committed(resp: aiohttp.ClientResponse) -> int | None:
    """Bytes the registry holds for an upload, from `Range: 0-<last>`."""
    match = _RANGE.match(resp.headers.get("Range", "").strip())
    return None if match is None else int(match.group(1)) + 1


def _check_digest(resp: aiohttp.ClientResponse, digest: Digest) -> None:
    header = resp.headers.get("Docker-Content-Digest")
    if header is None:
        return
    try:
        announced = Digest.parse(header)
    except DigestError as exc:
        raise ProtocolError(f"{resp.url}: invalid Docker-Content-Digest {header!r}") from exc
    if announced != digest:
        raise DigestMismatch(f"uploaded blob {digest}", digest, announced)


async def _chunks(source: BlobSource, offset: int, size: int) -> AsyncIterator[bytes]:
    """Chunks of the source from `offset`; `size` bounds each chunk (memory)."""
    if isinstance(source, bytes):
        for start in range(offset, len(source), size):
            yield source[start : start + size]
        return
    if callable(source):
        stream: AsyncIterable[bytes] = source(offset)
    elif offset:
        raise _UploadLost("a one-shot stream cannot be uploaded from an offset")
    else:
        stream = source
    buf = bytearray()
    async for piece in stream:
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


class BlobUpload:
    """One blob pushed into one repository."""

    def __init__(self, transport: Transport, host: str, name: str) -> None:
        self.t = transport
        self.host = host
        self.name = name

    async def exists(self, digest: Digest) -> int | None:
        """The blob's size when the repository has it, else None."""
        async with self.t.request(
            "HEAD",
            self.host,
            f"/v2/{self.name}/blobs/{digest}",
            repository=self.name,
            scopes=[sc.pull(self.name)],
        ) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                await raise_for_response(resp, "HEAD")
            return resp.content_length or 0

    async def mount(self, digest: Digest, source: str) -> URL | None:
        """Mount from `source` (same registry); None when mounted, else the upload URL the
        registry opened instead."""
        target = (
            f"/v2/{self.name}/blobs/uploads/?mount={quote(str(digest), safe='')}"
            f"&from={quote(source, safe='/')}"
        )
        async with self.t.request(
            "POST",
            self.host,
            target,
            repository=self.name,
            scopes=[sc.push(self.name), sc.pull(source)],
            idempotent=False,
        ) as resp:
            if resp.status == 201:
                _check_digest(resp, digest)
                return None
            if resp.status != 202:
                await raise_for_response(resp, "POST")
            return _location(resp)

    async def start(self) -> tuple[URL, int]:
        """A new upload session and the registry's minimum chunk size (0 if none)."""
        async with self.t.request(
            "POST",
            self.host,
            f"/v2/{self.name}/blobs/uploads/",
            repository=self.name,
            scopes=[sc.push(self.name)],
            idempotent=False,
        ) as resp:
            if resp.status != 202:
                await raise_for_response(resp, "POST")
            minimum = resp.headers.get("OCI-Chunk-Min-Length", "0")
            return _location(resp), int(minimum) if minimum.isdigit() else 0

    async def status(self, location: URL) -> tuple[int, URL]:
        """Bytes committed to an upload session, and its current URL."""
        async with self.t.request(
            "GET", self.host, location, repository=self.name, scopes=[sc.push(self.name)]
        ) as resp:
            if resp.status == 404:
                raise _UploadLost(f"upload {location} is gone")
            if resp.status not in (200, 204):
                await raise_for_response(resp, "GET")
            committed = _committed(resp)
            if committed is None:
                raise ProtocolError(f"GET {location}: upload status without a Range header")
            return committed, _location(resp) if "Location" in resp.headers else location

    async def put_whole(self, location: URL, source: BlobSource, digest: Digest, size: int) -> None:
        body: bytes | AsyncIterable[bytes]
        if isinstance(source, bytes):
            body = source
        elif callable(source):
            body = source(0)
        else:
            body = source
        await self._finish(location, digest, body, size)

    async def _finish(
        self, location: URL, digest: Digest, body: bytes | AsyncIterable[bytes], size: int
    ) -> None:
        async with self.t.request(
            "PUT",
            self.host,
            _with_digest(location, digest),
            repository=self.name,
            scopes=[sc.push(self.name)],
            headers={"Content-Type": OCTET, "Content-Length": str(size)},
            body=body,
            idempotent=False,
        ) as resp:
            if resp.status not in (201, 204):
                await raise_for_response(resp, "PUT")
            _check_digest(resp, digest)

    async def patch_all(
        self, location: URL, source: BlobSource, digest: Digest, chunk_size: int
    ) -> None:
        offset = 0
        async for chunk in _chunks(source, 0, chunk_size):
            location = await self._patch(location, chunk, offset)
            offset += len(chunk)
        await self._finish(location, digest, b"", 0)

    async def _patch(self, location: URL, chunk: bytes, offset: int) -> URL:
        """Send one chunk; after a failure, resend only what the registry lacks."""
        end = offset + len(chunk)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.t.request(
                    "PATCH",
                    self.host,
                    location,
                    repository=self.name,
                    scopes=[sc.push(self.name)],
                    headers={
                        "Content-Type": OCTET,
                        "Content-Range": f"{offset}-{end - 1}",
                        "Content-Length": str(len(chunk)),
                    },
                    body=chunk,
                    idempotent=False,
                ) as resp:
                    if resp.status == 202:
                        committed = _committed(resp)
                        if committed is not None and committed != end:
                            raise ProtocolError(
                                f"PATCH {location}: registry holds {committed} bytes, "
                                f"expected {end}"
                            )
                        return _location(resp)
                    await raise_for_response(resp, "PATCH")
            except (TransportError, RegistryResponseError) as exc:
                final = isinstance(exc, NotFoundError) or (
                    isinstance(exc, RegistryResponseError) and exc.status in (400, 401, 403)
                )
                if final or attempt >= self.t.retry.attempts:
                    raise
                await self.t.sleep(self.t.retry.delay(attempt, None))
                committed, location = await self.status(location)
                log.info(
                    "resuming upload",
                    extra={"offset": committed, "chunk_end": end, "error": str(exc)},
                )
                if committed >= end:
                    return location
                if committed < offset:
                    raise _UploadLost(
                        f"registry lost bytes of {location}: holds {committed}, sent {offset}"
                    ) from exc
                chunk, offset = chunk[committed - offset :], committed


async def push_blob(
    transport: Transport,
    host: str,
    name: str,
    source: BlobSource,
    digest: Digest,
    size: int,
    *,
    chunk_size: int | None = None,
    mount_from: Sequence[str] = (),
    check_existing: bool = True,
) -> PushedBlob:
    """Make `digest` exist in `host/name`: skip if present, else mount, else upload.

    `chunk_size=None` uploads in one PUT; a size uploads in PATCH chunks of at least that
    many bytes (or the registry's `OCI-Chunk-Min-Length`).
    """
    upload = BlobUpload(transport, host, name)
    if check_existing and await upload.exists(digest) is not None:
        return PushedBlob(digest, size, "existing")
    opened: URL | None = None
    for source_repo in mount_from:
        if opened is not None:
            await _abandon(upload, opened)
        opened = await upload.mount(digest, source_repo)
        if opened is None:
            return PushedBlob(digest, size, "mounted")
    replayable = isinstance(source, bytes) or callable(source)
    attempt = 0
    while True:
        attempt += 1
        try:
            location, minimum = (opened, 0) if opened is not None else await upload.start()
            opened = None
            if chunk_size is None:
                await upload.put_whole(location, source, digest, size)
            else:
                await upload.patch_all(location, source, digest, max(chunk_size, minimum))
            return PushedBlob(digest, size, "uploaded")
        except (TransportError, RegistryResponseError, _UploadLost) as exc:
            if isinstance(exc, RegistryResponseError) and exc.status in (400, 401, 403):
                raise
            # The final PUT may have landed with only its answer lost: ask before resending.
            if await upload.exists(digest) is not None:
                return PushedBlob(digest, size, "uploaded")
            if not replayable or attempt >= transport.retry.attempts:
                if isinstance(exc, _UploadLost):
                    raise TransportError(str(exc), url=f"{host}/{name}", attempts=attempt) from exc
                raise
            log.info("restarting upload", extra={"digest": str(digest), "error": str(exc)})
            await transport.sleep(transport.retry.delay(attempt, None))


async def _abandon(upload: BlobUpload, location: URL) -> None:
    """Cancel an upload session a failed mount opened (best effort)."""
    try:
        async with upload.t.request(
            "DELETE",
            upload.host,
            location,
            repository=upload.name,
            scopes=[sc.push(upload.name)],
        ):
            pass
    except ClientError:
        pass
