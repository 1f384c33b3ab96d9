"""Deadlines and health for any blob driver, so a stalled store fails requests instead of
hanging them.

A store that stops answering (a paused process, a black-holed network) keeps TCP
connections open: nothing errors, calls just wait. `GuardedDriver` wraps whichever
driver is configured and gives every call a deadline (`storage.timeout`; a read: until
its first byte, then `storage.idle_timeout` per chunk). A call that misses its deadline
raises `StorageUnavailable` (503 with Retry-After for the client) and marks the store as
stalled: for `storage.stall_cooldown` seconds further calls fail at once instead of each
waiting out its own deadline, then they try again — the service recovers by itself when
the store returns. `/readyz` probes through `probe()`, which ignores the cooldown, with
its own short deadline. Nothing here knows the driver's internals (the S3 client may be
replaced without touching this).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from registry.config import StorageConfig
from registry.logs import get_logger
from registry.oci.digest import Digest
from registry.storage.base import (
    BlobDriver,
    BlobMissing,
    DriverState,
    SocketBody,
    StorageError,
    StoredObject,
    UploadLost,
    UploadWriter,
)

log = get_logger("zoll.storage")
T = TypeVar("T")
PROBE_KEY = "readyz-probe"
ANSWERS = frozenset(
    {"probe", "stat", "read", "put", "commit", "delete", "list_blobs", "list_uploads"}
)
"""Calls whose success proves the store answered (some others may not reach it at all:
an S3 upload begins without a request), so only these end a stall's cooldown early."""


class StorageUnavailable(StorageError):
    """The store did not answer in time (or is known to be stalled): retry later."""


class StorageHealth:
    """What the last calls said about the store: answering, failing, or stalled."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self.problem: str | None = None
        """The last failure since the store last answered, or None."""
        self._stalled_until = 0.0

    def answered(self) -> None:
        if self.problem is not None:
            log.info("storage answers again", after=self.problem)
        self.problem = None
        self._stalled_until = 0.0

    def failed(self, problem: str) -> None:
        self.problem = problem

    def stalled(self, problem: str) -> None:
        if self.problem is None:
            log.error("storage stalled", problem=problem)
        self.problem = problem
        self._stalled_until = time.monotonic() + self.cooldown

    def check(self) -> None:
        """Fail at once while a recent call found the store stalled."""
        if time.monotonic() < self._stalled_until:
            raise StorageUnavailable(f"storage is not answering ({self.problem})")


class _GuardedWriter:
    """An upload writer whose every call has a deadline."""

    def __init__(self, writer: UploadWriter, guard: GuardedDriver) -> None:
        self._w = writer
        self._g = guard

    @property
    def size(self) -> int:
        return self._w.size

    def expect(self, size: int) -> None:
        self._w.expect(size)

    async def write(self, chunks: Sequence[bytes]) -> None:
        # A write may also wait for upload buffer memory (storage.buffer_wait, its own 503).
        await self._g.call("write", self._w.write(chunks), extra=self._g.config.buffer_wait)

    async def suspend(self) -> DriverState:
        return await self._g.call("suspend", self._w.suspend())

    async def drop_superseded(self) -> None:
        await self._g.call("drop_superseded", self._w.drop_superseded())

    def destination(self, digest: Digest) -> str:
        return self._w.destination(digest)

    async def commit(self, digest: Digest) -> str:
        return await self._g.call("commit", self._w.commit(digest))

    async def abort(self) -> None:
        """While the store is stalled only the memory is freed: the upload's data stays
        for GC's sweep, instead of every failed request waiting out another deadline."""
        try:
            self._g.health.check()
        except StorageUnavailable:
            await self.close()
            raise
        await self._g.call("abort", self._w.abort())

    async def close(self) -> None:
        await self._g.call("close", self._w.close(), cleanup=True)


class GuardedDriver:
    """`driver` with deadlines on every call and a record of the store's health."""

    def __init__(self, driver: BlobDriver, config: StorageConfig) -> None:
        self.inner = driver
        self.config = config
        self.name = driver.name
        self.max_object_size = driver.max_object_size
        self.health = StorageHealth(config.stall_cooldown)

    async def call(
        self,
        what: str,
        awaitable: Awaitable[T],
        *,
        seconds: float | None = None,
        extra: float = 0.0,
        check: bool = True,
        cleanup: bool = False,
    ) -> T:
        """Await `awaitable` within the deadline. `check=False` runs it even while the
        store is marked stalled (the probe); `cleanup=True` too, and its success says
        nothing about the store (closing a stream, cancelling a writer's parts)."""
        deadline = (self.config.timeout if seconds is None else seconds) + extra
        try:
            if check and not cleanup:
                self.health.check()
            async with asyncio.timeout(deadline) as scope:
                result = await awaitable
        except TimeoutError:
            if not scope.expired():
                raise
            problem = f"{what} took longer than {deadline:g} s"
            self.health.stalled(problem)
            raise StorageUnavailable(f"storage did not answer: {problem}") from None
        except (BlobMissing, UploadLost):
            if what in ANSWERS and not cleanup:
                self.health.answered()
            raise
        except StorageUnavailable:
            raise
        except StorageError as exc:
            self.health.failed(f"{what}: {exc}")
            raise
        finally:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started (the store is stalled): no warning
        if what in ANSWERS and not cleanup:
            self.health.answered()
        return result

    async def probe(self) -> str:
        """`ok`, or what is wrong: one small call with `storage.probe_timeout`, never
        refused by a cooldown (this is how a stalled store is seen to be back)."""
        try:
            await self.call(
                "probe",
                self.inner.stat(PROBE_KEY),
                seconds=self.config.probe_timeout,
                check=False,
            )
        except (StorageError, OSError) as exc:
            return f"failed: {exc}"
        return "ok"

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def begin_upload(self, upload_id: str) -> DriverState:
        return await self.call("begin_upload", self.inner.begin_upload(upload_id))

    async def resume_upload(self, upload_id: str, state: DriverState, size: int) -> UploadWriter:
        writer = await self.call(
            "resume_upload",
            self.inner.resume_upload(upload_id, state, size),
            extra=self.config.buffer_wait,
        )
        return _GuardedWriter(writer, self)

    async def discard_upload(self, upload_id: str, state: DriverState) -> None:
        await self.call("discard_upload", self.inner.discard_upload(upload_id, state))

    async def put(self, digest: Digest, data: bytes) -> str:
        return await self.call("put", self.inner.put(digest, data))

    async def put_object(self, key: str, data: bytes) -> None:
        await self.call("put_object", self.inner.put_object(key, data))

    async def stat(self, key: str) -> int | None:
        return await self.call("stat", self.inner.stat(key))

    async def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The first chunk within `storage.timeout`, each further one within
        `storage.idle_timeout`: a slow store that keeps sending is fine, a silent one not."""
        chunks = aiter(self.inner.read(key, offset, length))
        timeout = self.config.timeout
        try:
            while True:
                try:
                    chunk = await self.call("read", anext(chunks), seconds=timeout)
                except StopAsyncIteration:
                    return
                except (StorageError, OSError):
                    raise
                except Exception as exc:  # a client library's own error mid-stream
                    self.health.failed(f"read: {exc!r}")
                    raise StorageError(f"reading {key} failed: {exc!r}") from exc
                timeout = self.config.idle_timeout
                yield chunk
        finally:
            closing = getattr(chunks, "aclose", None)
            if closing is not None:
                await self.call("read", closing(), cleanup=True)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    async def socket_body(self, key: str, offset: int, length: int) -> SocketBody | None:
        """Within `storage.timeout`, like a read's first chunk; the caller then moves the
        bytes itself and gives up on a store that falls silent (`storage.idle_timeout`).
        Only a body proves the store answered (None may mean it could not be reached)."""
        body = await self.call("socket_body", self.inner.socket_body(key, offset, length))
        if body is not None:
            self.health.answered()
        return body

    async def presign(self, key: str) -> str | None:
        return await self.call("presign", self.inner.presign(key))

    async def delete(self, key: str) -> None:
        await self.call("delete", self.inner.delete(key))

    async def delete_many(self, keys: Sequence[str]) -> dict[str, str]:
        return await self.call("delete", self.inner.delete_many(keys))

    async def list_blobs(self, page: int = 1000) -> AsyncIterator[StoredObject]:
        async for item in self._listing("list_blobs", self.inner.list_blobs(page)):
            yield item

    async def list_uploads(self) -> AsyncIterator[tuple[str, datetime]]:
        async for item in self._listing("list_uploads", self.inner.list_uploads()):
            yield item

    async def _listing(self, what: str, items: AsyncIterator[T]) -> AsyncIterator[T]:
        listing = aiter(items)
        try:
            while True:
                try:
                    yield await self.call(what, anext(listing))
                except StopAsyncIteration:
                    return
        finally:
            closing = getattr(listing, "aclose", None)
            if closing is not None:
                await self.call(what, closing(), cleanup=True)
