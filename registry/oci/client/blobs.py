"""Blob downloads that survive dropped connections and never pass off wrong bytes.

A layer of several gigabytes over a flaky upstream must not start over after every reset.
The download keeps one running hash; when the connection drops it asks again with
`Range: bytes=<received>-` and continues hashing where it stopped (a registry that
ignores `Range` answers 200, and the bytes already seen are skipped). The digest of the
whole blob is checked at the end: a stream raises `DigestMismatch` instead of finishing,
and `download_blob` only renames a verified file into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import aiohttp

from registry.oci.client import scopes as sc
from registry.oci.client.errors import (
    DigestMismatch,
    ProtocolError,
    SizeMismatch,
    TransportError,
)
from registry.oci.client.transport import raise_for_response
from registry.oci.digest import Digest
from registry.oci.hashing import ResumableHasher

if TYPE_CHECKING:
    from registry.oci.client.transport import Transport

log = logging.getLogger("registry.oci.client")

_CONTENT_RANGE: Final = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
INLINE_HASH: Final = 256 * 1024
"""Chunks up to this size are hashed on the event loop (tens of microseconds); larger ones
in a worker thread."""
WRITE_BATCH: Final = 4 * 1024 * 1024
DROPPED: Final = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)


def _range_start(resp: aiohttp.ClientResponse) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
    if match is None:
        raise ProtocolError(f"GET {resp.url}: 206 without a valid Content-Range")
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


async def stream_blob(
    transport: Transport,
    host: str,
    name: str,
    digest: Digest,
    *,
    size: int | None = None,
) -> AsyncIterator[bytes]:
    """Yield the blob's bytes; raise `DigestMismatch`/`SizeMismatch` at the end if wrong.

    `size` (from a descriptor) is enforced: a registry sending more is cut off at once.
    """
    hasher = ResumableHasher(digest.algorithm)
    received = 0
    total = size
    resumes = 0
    path = f"/v2/{name}/blobs/{digest}"
    while True:
        headers = {"Range": f"bytes={received}-"} if received else {}
        skip = 0
        try:
            async with transport.request(
                "GET", host, path, repository=name, scopes=[sc.pull(name)], headers=headers
            ) as resp:
                if resp.status == 206 and received:
                    start, announced = _range_start(resp)
                    if start != received:
                        raise ProtocolError(
                            f"GET {resp.url}: asked for bytes from {received}, got from {start}"
                        )
                    total = total if total is not None else announced
                elif resp.status == 200:
                    skip = received  # Range ignored: the whole blob again
                    if total is None and resp.content_length is not None:
                        total = resp.content_length
                elif resp.status == 416 and received and received == total:
                    break
                else:
                    await raise_for_response(resp, "GET")
                if (
                    total is not None
                    and resp.status == 200
                    and resp.content_length is not None
                    and resp.content_length != total
                ):
                    raise SizeMismatch(f"blob {digest}", total, resp.content_length)
                async for chunk in resp.content.iter_chunked(transport.limits.read_chunk):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    received += len(chunk)
                    if total is not None and received > total:
                        raise SizeMismatch(f"blob {digest}", total, received)
                    if len(chunk) > INLINE_HASH:
                        await asyncio.to_thread(hasher.update, chunk)
                    else:
                        hasher.update(chunk)
                    yield chunk
        except DROPPED as exc:
            resumes += 1
            if resumes > transport.retry.max_resumes:
                raise TransportError(
                    f"GET {path}: connection dropped {resumes} times, giving up at byte "
                    f"{received}: {exc}",
                    url=path,
                    attempts=resumes,
                ) from exc
            delay = transport.retry.delay(resumes, None)
            log.info(
                "resuming blob", extra={"digest": str(digest), "offset": received, "delay": delay}
            )
            await transport.sleep(delay)
            continue
        if total is not None and received < total:
            resumes += 1  # the body ended early without an error: continue from there
            if resumes > transport.retry.max_resumes:
                raise SizeMismatch(f"blob {digest}", total, received)
            continue
        break
    actual = hasher.digest()
    if actual != digest:
        raise DigestMismatch(f"blob {digest}", digest, actual)


async def download_blob(
    transport: Transport,
    host: str,
    name: str,
    digest: Digest,
    destination: Path,
    *,
    size: int | None = None,
) -> int:
    """Write the blob to `destination` only once verified; returns its size.

    Bytes go to `<destination>.partial` first; on any error that file is removed, so a
    file at `destination` is always complete and correct.
    """
    partial = destination.with_name(destination.name + ".partial")
    written = 0
    pending = bytearray()
    handle = await asyncio.to_thread(partial.open, "wb")
    try:
        try:
            async for chunk in stream_blob(transport, host, name, digest, size=size):
                pending += chunk
                written += len(chunk)
                if len(pending) >= WRITE_BATCH:
                    await asyncio.to_thread(handle.write, pending)
                    pending = bytearray()
            await asyncio.to_thread(handle.write, pending)
            await asyncio.to_thread(handle.flush)
            await asyncio.to_thread(os.fsync, handle.fileno())
        finally:
            await asyncio.to_thread(handle.close)
        await asyncio.to_thread(partial.replace, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return written
