"""The storage driver interface, modelled on CNCF distribution's, narrowed to blobs.

The registry owns identity (digests, verified before anything becomes visible) and the
mapping digest → storage key (in PostgreSQL); drivers only move bytes. An upload is
written through an `UploadWriter` that can be suspended between requests (its state
saved as JSON with the session) and resumed by any worker process.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from registry.oci.digest import Digest

DriverState = dict[str, Any]


def content_key(digest: Digest) -> str:
    """Where every driver keeps a blob stored whole (`put`, small uploads)."""
    return f"blobs/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"


class StorageError(Exception):
    """The backend failed; the request gets a 5xx and nothing becomes visible."""


class BlobMissing(StorageError):
    """The key has no object (removed out of band, or never written)."""


class UploadLost(StorageError):
    """The data of an upload session is gone from storage (expired or cleaned up)."""


class ObjectTooLarge(StorageError):
    """The blob would pass what the store can hold in one object (S3: 5 TiB); the
    client's request is refused, not retried."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


@dataclass(eq=False, slots=True)
class SocketBody:
    """Blob bytes still on the store's connection, for the HTTP layer to splice(2) to its
    client without copying them through Python: `head` came with the response headers,
    `remaining` more are to be read from `sock` (a plain TCP socket in no pool). Whoever
    takes it closes `sock`, also when it reads fewer bytes."""

    sock: socket.socket
    head: bytes
    remaining: int


class UploadWriter(Protocol):
    """Appends to one upload; `suspend`, `commit`, `abort` or `close` ends its use."""

    @property
    def size(self) -> int:
        """Bytes written so far, including earlier requests."""
        ...

    def expect(self, size: int) -> None:
        """The request being written brings `size` more bytes (its Content-Length): a
        driver may send them as they arrive instead of buffering them (S3 parts)."""
        ...

    async def write(self, chunks: Sequence[bytes]) -> None:
        """Append `chunks` in order (one call per ~1 MiB batch, to keep thread hops few)."""
        ...

    async def suspend(self) -> DriverState:
        """Make everything written durable and return the state to resume from."""
        ...

    async def drop_superseded(self) -> None:
        """After the new state was saved: delete data only the previous state needed."""
        ...

    def destination(self, digest: Digest) -> str:
        """The key `commit(digest)` would write now: recorded as a store write in progress
        before the commit, so GC finds the object if its row is never written."""
        ...

    async def commit(self, digest: Digest) -> str:
        """Turn the upload into the stored blob `digest` (already verified); return its
        key (`destination(digest)`)."""
        ...

    async def abort(self) -> None:
        """Discard everything written."""
        ...

    async def close(self) -> None:
        """End this request's use after a failure, saving nothing: free its memory and
        handles. The state saved before the request stays valid to resume from."""
        ...


class BlobDriver(Protocol):
    """Where blob bytes live."""

    name: str
    max_object_size: int | None
    """The largest blob the store can hold (None: no limit of its own)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def begin_upload(self, upload_id: str) -> DriverState:
        """Prepare storage for a new upload; return its initial state."""
        ...

    async def resume_upload(self, upload_id: str, state: DriverState, size: int) -> UploadWriter:
        """A writer continuing an upload at `size` bytes."""
        ...

    async def discard_upload(self, upload_id: str, state: DriverState) -> None:
        """Remove an upload's data (cancel, expiry, failed verification)."""
        ...

    async def put(self, digest: Digest, data: bytes) -> str:
        """Store verified bytes held in memory as blob `digest` in one call, complete or
        not at all; return the key. No upload session: callers hold the digest lock
        until the blob row is recorded, so GC's orphan sweep cannot take it meanwhile."""
        ...

    async def put_object(self, key: str, data: bytes) -> None:
        """Write a named object (not a blob: the transparency log's tiles) in one call,
        complete or not at all, replacing what was there."""
        ...

    async def stat(self, key: str) -> int | None:
        """Size of the object at `key`, or None."""
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (or to the end) of `key` from `offset`."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file the HTTP layer may sendfile() directly, if the driver has one."""
        ...

    async def socket_body(self, key: str, offset: int, length: int) -> SocketBody | None:
        """`length` bytes of `key` from `offset` on a connection the HTTP layer may
        splice(2) from, if the driver has one (else None: `read` them)."""
        ...

    async def presign(self, key: str) -> str | None:
        """A time-limited URL clients may GET the object from, if the driver supports it."""
        ...

    async def delete(self, key: str) -> None:
        """Delete `key`; missing keys are not an error."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Delete `keys` (missing ones are not an error) in as few requests as the store
        allows; return key → why for each key that may still be there. Raises
        StorageError when the store could not be asked at all."""
        ...

    def list_blobs(self, page: int = 1000) -> AsyncIterator[StoredObject]:
        """Every stored blob object (for GC's deep pass); `page`: objects per listing
        request, where the store lists in pages (a smaller one is a shorter request)."""
        ...

    def list_uploads(self) -> AsyncIterator[tuple[str, datetime]]:
        """Upload ids that have data in storage, with their last change."""
        ...
