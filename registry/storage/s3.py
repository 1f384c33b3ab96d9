"""S3 driver: streaming multipart uploads, ranged reads, presigned GETs.

S3 cannot rename, so an upload whose digest is unknown until the end is written as a
multipart upload to its own key (`blobs/u/<upload id>`) and completed in place; small
uploads go to `blobs/<alg>/<2 hex>/<hex>` in one PUT. The registry records the key.
Between requests of a chunked upload, bytes that do not yet fill a part (S3 needs
≥ 5 MiB per part except the last) wait in a tail object named after the offset it
ends at, so a retried request never overwrites what a saved state points to.

A part is the request's chunks as they arrived, never joined or copied. When the
request's Content-Length says a whole part is coming (`UploadWriter.expect`), the part
is streamed: its UploadPart starts at once and its bytes are sent as they arrive, with
at most `STREAM_WINDOW` of them waiting, so memory does not grow with the part size.
Otherwise (a chunked body without a length, the end of a request) bytes wait in a
buffer until a part is full, held once and sent as they are; such a part is retried
on S3 errors, a streamed one cannot be (its bytes are gone) and fails the request (503,
the client retries it). S3 allows 10,000 parts of at most 5 GiB and objects of at most
5 TiB: the part size grows with the part number (`part_size_for`) so that 10,000 parts
hold 5 TiB whatever `storage.s3.part_size` is, and an upload that would pass 5 TiB is
refused (`ObjectTooLarge`) before a byte more is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from registry.config import S3Config
from registry.oci.digest import Digest
from registry.storage.base import (
    BlobMissing,
    DriverState,
    ObjectTooLarge,
    SocketBody,
    StorageError,
    StoredObject,
    UploadLost,
    content_key,
)
from registry.storage.budget import ByteBudget
from registry.storage.s3_client import DELETE_BATCH, S3Client, S3Error
from registry.storage.sigv4 import Credentials

T = TypeVar("T")
CHUNK = 1 << 20
STREAM_WINDOW = 2 << 20
"""Bytes of a streamed part that may wait for the S3 connection before the upload stops
reading from its client."""
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 << 30
MAX_OBJECT_SIZE = 5 << 40
"""S3's limits: parts per multipart upload, bytes per part, bytes per object (5 TiB)."""
PARTS_BEFORE_GROWTH = 1000
"""After this many parts the part size doubles (see `part_size_for`)."""


def part_size_for(number: int, base: int) -> int:
    """The size at which part `number` (1-based) is sent: `base` for the first 1,000 parts,
    then doubling every 1,000 (every 500 when `base` is under 8 MiB, whose doubling per
    1,000 would fall short of 5 TiB), capped below 5 GiB with room for the chunk that
    crosses it. 10,000 parts so hold at least 5 TiB for every allowed `base`; a blob
    under 16 GiB (with the 16 MiB default) never sees a part grow."""
    step = PARTS_BEFORE_GROWTH if base >= 8 << 20 else PARTS_BEFORE_GROWTH // 2
    size: int = base << ((number - 1) // step)
    return min(size, MAX_PART_SIZE - (64 << 20))


def _storage_error(exc: S3Error, key: str = "") -> StorageError:
    if exc.missing:
        return BlobMissing(key or str(exc))
    return StorageError(str(exc))


class _StreamedPart:
    """A part whose UploadPart is under way while its bytes still arrive: S3 needs the
    part's length first, which `expect` made known. `feed` waits while `STREAM_WINDOW`
    bytes are queued (the upload stops reading from its client) and fails at once if
    the send has failed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.remaining = size
        self.task: asyncio.Task[None] | None = None
        self._chunks: deque[memoryview | bytes] = deque()
        self._held = 0
        # One event per direction: each is cleared only by the side that waits on it.
        self._space = asyncio.Event()
        self._data = asyncio.Event()

    async def feed(self, data: memoryview | bytes) -> None:
        assert self.task is not None
        while self._held >= STREAM_WINDOW:
            if self.task.done():
                self.task.result()  # the send's failure, as StorageError
                raise StorageError("S3 ended a streamed part before its last byte")
            self._space.clear()
            waiting = asyncio.ensure_future(self._space.wait())
            try:
                await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # cancelled too (the client went away): no waiter is left behind
                waiting.cancel()
        self._chunks.append(data)
        self._held += len(data)
        self.remaining -= len(data)
        self._data.set()

    async def body(self) -> AsyncIterator[memoryview | bytes]:
        sent = 0
        while sent < self.size:
            while not self._chunks:
                self._data.clear()
                await self._data.wait()
            chunk = self._chunks.popleft()
            self._held -= len(chunk)
            self._space.set()
            sent += len(chunk)
            yield chunk


class _S3UploadWriter:
    def __init__(self, driver: S3Driver, upload_id: str, state: DriverState, size: int) -> None:
        self._d = driver
        self._id = upload_id
        self._old_tail: str | None = state.get("tail")
        self._mpu: str | None = state.get("mpu")
        self._parts: list[dict[str, Any]] = list(state.get("parts", []))
        self._size = size
        self._buffer: list[memoryview | bytes] = []
        self._buffered = 0
        self._reserved = 0
        self._inflight: list[asyncio.Task[None]] = []
        self._new_tail: str | None = None
        self._coming: int | None = None
        self._stream: _StreamedPart | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def _mpu_key(self) -> str:
        return self._d.key(f"blobs/u/{self._id}")

    def _part_size(self) -> int:
        return part_size_for(len(self._parts) + 1, self._d.config.part_size)

    async def load_tail(self) -> None:
        if not self._old_tail:
            return
        data = await self._d.get_bytes(self._old_tail)
        if data is None:
            raise UploadLost(f"pending bytes of upload {self._id} are gone")
        await self._reserve()
        self._buffer.append(data)
        self._buffered += len(data)

    async def _reserve(self) -> None:
        if self._reserved == 0:
            amount = self._part_size() + CHUNK
            await self._d.budget.acquire(amount)
            self._reserved = amount

    def expect(self, size: int) -> None:
        self._coming = size

    async def write(self, chunks: Sequence[bytes]) -> None:
        adding = sum(len(c) for c in chunks)
        if self._size + adding > MAX_OBJECT_SIZE:
            raise ObjectTooLarge(
                f"blobs on S3 end at {MAX_OBJECT_SIZE} bytes (5 TiB), "
                f"this upload would reach {self._size + adding}"
            )
        if self._coming is not None:
            self._coming = max(self._coming - adding, 0)
        left = adding  # bytes of this batch not yet placed, the current chunk included
        for data in chunks:
            view: memoryview | bytes = data
            while len(view):
                if (
                    self._stream is None
                    and self._coming is not None
                    and self._buffered + left + self._coming >= self._part_size()
                ):
                    await self._open_stream()
                if self._stream is not None:
                    take = min(len(view), self._stream.remaining)
                    piece = view if take == len(view) else memoryview(view)[:take]
                    await self._stream.feed(piece)
                    if self._stream.remaining == 0:
                        self._stream = None
                else:
                    take = len(view)
                    await self._reserve()
                    self._buffer.append(view)
                    self._buffered += take
                view = memoryview(view)[take:] if take < len(view) else b""
                self._size += take
                left -= take
                if self._stream is None and self._buffered >= self._part_size():
                    await self._flush_part()

    async def _next_part(self) -> int:
        """Wait for room among the parts in flight, begin the multipart upload if this
        is its first part, and return the new part's number."""
        while len(self._inflight) >= self._d.config.parts_in_flight:
            await self._inflight.pop(0)  # an earlier part's failure surfaces here
            # A part that ended in this turn of the loop has its reservation released by
            # a done callback still queued: let it run before the next one is taken.
            await asyncio.sleep(0)
        if self._mpu is None:
            self._mpu = await self._d.call(self._d.client.create_multipart_upload(self._mpu_key))
        return len(self._parts) + 1

    async def _open_stream(self) -> None:
        """Start sending the next part while its bytes arrive; what the buffer holds goes
        first. The writer's reservation (if any) goes with the part's task, plus the
        window's."""
        number = await self._next_part()
        stream = _StreamedPart(self._part_size())
        await self._d.budget.acquire(STREAM_WINDOW)
        reserved = self._reserved + STREAM_WINDOW
        self._reserved = 0
        self._parts.append({"n": number, "etag": None, "size": stream.size})
        task = asyncio.create_task(self._send_part(number, stream.body(), stream.size))
        task.add_done_callback(lambda _: self._d.budget.release(reserved))
        stream.task = task
        self._inflight.append(task)
        self._stream = stream
        for chunk in self._take_buffer():
            await stream.feed(chunk)

    def _take_buffer(self) -> list[memoryview | bytes]:
        data = self._buffer
        self._buffer, self._buffered = [], 0
        return data

    async def _flush_part(self) -> None:
        """Send the buffer as the next part. The part's reservation goes with its task and
        is released when the task ends, however it ends (cancelled before it ran too);
        until the task exists it stays the writer's, released by suspend/commit/abort."""
        number = await self._next_part()
        self._parts.append({"n": number, "etag": None, "size": self._buffered})
        data, reserved = self._take_buffer(), self._reserved
        self._reserved = 0
        task = asyncio.create_task(self._send_part(number, data))
        task.add_done_callback(lambda _: self._d.budget.release(reserved))
        self._inflight.append(task)

    async def _send_part(
        self,
        number: int,
        data: Sequence[memoryview | bytes] | AsyncIterator[memoryview | bytes],
        length: int | None = None,
    ) -> None:
        assert self._mpu is not None
        etag = await self._d.call(
            self._d.client.upload_part(self._mpu_key, self._mpu, number, data, length)
        )
        self._parts[number - 1]["etag"] = etag

    def _check_stream(self) -> None:
        """A request cannot end inside a streamed part (its length was announced and
        aiohttp holds the client to it); if it did, nothing may be saved or committed."""
        if self._stream is not None:
            raise StorageError("the request ended before the part it announced")

    async def _drain(self) -> None:
        try:
            for task in self._inflight:
                await task
        finally:
            await self._cancel_inflight()

    async def _cancel_inflight(self) -> None:
        """Stop the parts still being sent and wait until they have ended, so their
        reservations are back before the caller goes on."""
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._inflight.clear()

    async def _release(self) -> None:
        if self._reserved:
            self._d.budget.release(self._reserved)
            self._reserved = 0
        self._take_buffer()

    async def suspend(self) -> DriverState:
        try:
            self._check_stream()
            await self._drain()
            tail = None
            if self._buffer:
                tail = self._d.key(f"uploads/{self._id}/tail.{self._size}")
                if tail != self._old_tail:
                    await self._d.call(self._d.client.put_object(tail, self._buffer))
            self._new_tail = tail
            return {"mpu": self._mpu, "parts": self._parts, "tail": tail}
        finally:
            await self._release()

    async def drop_superseded(self) -> None:
        if self._old_tail and self._old_tail != self._new_tail:
            await self._d.delete(self._old_tail, absolute=True)

    def destination(self, digest: Digest) -> str:
        """One part or less goes to the content key in one PUT; more completes the
        multipart upload at this upload's own key."""
        if self._mpu is None:
            return content_key(digest)
        return self._mpu_key[len(self._d.config.prefix) :]

    async def commit(self, digest: Digest) -> str:
        key = self.destination(digest)
        try:
            self._check_stream()
            if self._mpu is None:
                await self._d.call(self._d.client.put_object(self._d.key(key), self._take_buffer()))
            else:
                if self._buffer:
                    await self._flush_part()
                await self._drain()
                await self._d.call(
                    self._d.client.complete_multipart_upload(
                        self._mpu_key, self._mpu, [(p["n"], p["etag"]) for p in self._parts]
                    )
                )
        finally:
            await self._release()
        if self._old_tail:
            await self._d.delete(self._old_tail, absolute=True)
        return key

    async def close(self) -> None:
        self._stream = None
        await self._release()
        await self._cancel_inflight()

    async def abort(self) -> None:
        await self.close()
        await self._d.discard_upload(
            self._id, {"mpu": self._mpu, "parts": self._parts, "tail": self._old_tail}
        )


class S3Driver:
    """Blobs in an S3 bucket."""

    name = "s3"
    max_object_size: int | None = MAX_OBJECT_SIZE

    def __init__(self, config: S3Config, budget: ByteBudget) -> None:
        if not config.endpoint:
            raise StorageError("storage.s3.endpoint is not set")
        self.config = config
        self.budget = budget
        self.client = S3Client(
            config.endpoint,
            config.bucket,
            config.region,
            Credentials(config.access_key or "zoll", config.secret_key or "zoll"),
            max_attempts=config.max_attempts,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )

    def key(self, relative: str) -> str:
        return f"{self.config.prefix}{relative}"

    async def start(self) -> None:
        await self.client.start()
        await self._ensure_bucket()

    async def _ensure_bucket(self, attempts: int = 30) -> None:
        """Wait for the bucket (creating it if allowed); a fresh SeaweedFS needs a moment."""
        for attempt in range(attempts):
            try:
                await self.client.head_bucket()
                return
            except S3Error as exc:
                if self.config.create_bucket:
                    with contextlib.suppress(S3Error):
                        await self.client.create_bucket()
                if attempt == attempts - 1:
                    raise StorageError(f"bucket {self.config.bucket!r} unusable: {exc}") from exc
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        await self.client.close()

    async def call(self, awaitable: Awaitable[T]) -> T:
        """One S3 call, with its errors mapped to StorageError / BlobMissing."""
        try:
            return await awaitable
        except S3Error as exc:
            raise _storage_error(exc) from exc

    async def get_bytes(self, key: str) -> bytes | None:
        try:
            data: bytes = await self.call(self.client.get_bytes(key))
        except BlobMissing:
            return None
        return data

    async def begin_upload(self, upload_id: str) -> DriverState:
        return {}

    async def put(self, digest: Digest, data: bytes) -> str:
        key = content_key(digest)
        await self.put_object(key, data)
        return key

    async def put_object(self, key: str, data: bytes) -> None:
        await self.call(self.client.put_object(self.key(key), data))

    async def resume_upload(self, upload_id: str, state: DriverState, size: int) -> _S3UploadWriter:
        writer = _S3UploadWriter(self, upload_id, state, size)
        await writer.load_tail()
        return writer

    async def discard_upload(self, upload_id: str, state: DriverState) -> None:
        if state.get("mpu"):
            with contextlib.suppress(StorageError):
                await self.call(
                    self.client.abort_multipart_upload(
                        self.key(f"blobs/u/{upload_id}"), state["mpu"]
                    )
                )
        async for obj in self._list(self.key(f"uploads/{upload_id}/")):
            await self.delete(obj.key, absolute=True)

    async def stat(self, key: str) -> int | None:
        try:
            size: int = await self.call(self.client.head_object(self.key(key)))
        except BlobMissing:
            return None
        return size

    async def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes in the pieces the connection received them. Not joined into
        1 MiB reads: each such buffer is mmapped fresh (above `tune_malloc`'s threshold),
        page-faulted in and copied into, which held proxied pulls at 0.6× distribution
        proxying against 0.8× as received (docs/benchmarks.md)."""
        resp = await self.call(self.client.get_object(self.key(key), offset, length))
        try:
            async for chunk, _ in resp.content.iter_chunks():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StorageError(f"S3 read of {key} failed: {exc!r}") from exc
        finally:
            resp.release()

    def local_path(self, key: str) -> Path | None:
        return None

    async def socket_body(self, key: str, offset: int, length: int) -> SocketBody | None:
        """The range on a connection of its own, for splice(2) (`S3Client.get_object_socket`:
        plain HTTP endpoints only)."""
        if length <= 0:
            return None
        return await self.client.get_object_socket(self.key(key), offset, length)

    async def presign(self, key: str) -> str | None:
        return self.client.presign_get(self.key(key), self.config.presign_seconds)

    async def delete(self, key: str, *, absolute: bool = False) -> None:
        with contextlib.suppress(BlobMissing):
            await self.call(self.client.delete_object(key if absolute else self.key(key)))

    async def delete_many(self, keys: Sequence[str]) -> dict[str, str]:
        """One DeleteObjects request per 1,000 keys, not one request per key."""
        failed: dict[str, str] = {}
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            by_full = {self.key(k): k for k in batch}
            errors = await self.call(self.client.delete_objects(list(by_full)))
            failed.update({by_full.get(k, k): why for k, why in errors.items()})
        return failed

    async def _list(self, prefix: str, page: int = 1000) -> AsyncIterator[StoredObject]:
        try:
            async for obj in self.client.list_objects(prefix, page):
                yield StoredObject(obj.key, obj.size, obj.modified)
        except S3Error as exc:
            raise StorageError(f"S3 listing of {prefix} failed: {exc}") from exc

    async def list_blobs(self, page: int = 1000) -> AsyncIterator[StoredObject]:
        strip = len(self.config.prefix)
        async for obj in self._list(self.key("blobs/"), page):
            yield StoredObject(obj.key[strip:], obj.size, obj.modified)

    async def list_uploads(self) -> AsyncIterator[tuple[str, datetime]]:
        latest: dict[str, datetime] = {}
        async for obj in self._list(self.key("uploads/")):
            upload_id = obj.key[len(self.key("uploads/")) :].split("/", 1)[0]
            latest[upload_id] = max(obj.modified, latest.get(upload_id, obj.modified))
        try:
            uploads = await self.call(self.client.list_multipart_uploads(self.key("blobs/u/")))
            for key, initiated in uploads:
                upload_id = key.rsplit("/", 1)[-1]
                latest[upload_id] = max(initiated, latest.get(upload_id, initiated))
        except StorageError:
            pass  # some S3 implementations cannot list multipart uploads
        for upload_id, modified in latest.items():
            yield upload_id, modified
