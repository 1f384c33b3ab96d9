"""Blob uploads: stream request bodies into storage, hash them, verify, then publish.

Bytes flow socket → ~1 MiB batch of chunks → (hash in a worker thread ∥ driver write),
with the next batch read from the socket while the previous one is processed. The running hash
state and the driver state are saved with the session after every request, so any
worker process can continue a chunked upload. Nothing is visible until the digest the
client names matches the bytes received: then `db.blobs.finalize` publishes the blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from registry import quotas
from registry.audit.context import current_actor
from registry.config import Config, UploadConfig
from registry.db import blobs as blob_rows
from registry.db import uploads as sessions
from registry.logs import get_logger
from registry.oci.digest import Digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.hashing import ResumableHasher
from registry.storage.base import (
    BlobDriver,
    ObjectTooLarge,
    StorageError,
    UploadLost,
    UploadWriter,
    content_key,
)
from registry.storage.budget import ByteBudget

CHUNK = 1 << 20
log = get_logger("zoll.uploads")


class ByteSource(Protocol):
    """What aiohttp's request body stream offers (and test streams can too)."""

    async def readany(self) -> bytes: ...


class VerifyingSource(ByteSource, Protocol):
    """A source that checks its bytes against `verifies` itself and raises before its
    end when they differ (the OCI client's blob stream does). The upload then keeps the
    same guarantee without hashing every byte a second time."""

    verifies: Digest


@dataclass(frozen=True, slots=True)
class UploadState:
    id: uuid.UUID
    size: int
    received: int = 0
    """Bytes this request added."""


def _session_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"upload": raw[:80]}) from None


class UploadService:
    """Everything between an HTTP upload request and a published blob."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        driver: BlobDriver,
        budget: ByteBudget,
        config: UploadConfig,
        *,
        settings: Config | None = None,
    ) -> None:
        self.pool = pool
        self.driver = driver
        self.budget = budget
        self.config = config
        self.settings = settings
        """The whole configuration, for storage quotas (none: no quotas)."""

    async def _allowance(self, name: str) -> quotas.Allowance | None:
        """The calling principal's storage quota in `name`'s namespace, refused at once
        when it is used up."""
        if self.settings is None or not self.settings.quotas:
            return None
        allowance = await quotas.allowance(
            self.pool, self.settings, current_actor().quota_holder(), name
        )
        if allowance is not None and allowance.remaining == 0:
            raise allowance.exceeded(0)
        return allowance

    async def start(self, name: str) -> UploadState:
        """Open a session (a client's POST), within the caps on open sessions per
        principal and per repository. The row comes first, so storage never holds upload
        data that the GC sweep could mistake for abandoned."""
        await self._allowance(name)
        session_id = uuid.uuid4()
        try:
            await sessions.open_capped(
                self.pool,
                name,
                session_id,
                current_actor().quota_holder(),
                self.config.max_sessions_per_principal,
                self.config.max_sessions_per_repository,
            )
        except sessions.TooManySessions as exc:
            raise RegistryError(
                ErrorCode.TOOMANYREQUESTS, str(exc), headers={"Retry-After": "30"}
            ) from None
        try:
            state = await self.driver.begin_upload(str(session_id))
        except BaseException:
            await sessions.delete(self.pool, session_id)
            raise
        if state:
            await sessions.save(self.pool, session_id, 0, None, state)
        return UploadState(session_id, 0)

    async def status(self, name: str, raw_id: str) -> UploadState:
        session = await sessions.get(self.pool, name, _session_id(raw_id))
        if session is None:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN)
        return UploadState(session.id, session.size)

    async def cancel(self, name: str, raw_id: str) -> None:
        session = await self._lease(name, raw_id)
        await self.driver.discard_upload(str(session.id), session.driver_state)
        await sessions.delete(self.pool, session.id)

    async def _lease(self, name: str, raw_id: str) -> sessions.Session:
        try:
            session = await sessions.lease(
                self.pool, name, _session_id(raw_id), self.config.lease_seconds
            )
        except sessions.SessionBusy:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                "another request is writing to this upload",
                status=409,
            ) from None
        if session is None:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN)
        return session

    async def append(
        self, name: str, raw_id: str, body: ByteSource, content_range: tuple[int, int] | None
    ) -> UploadState:
        """PATCH: add a chunk; `content_range` (inclusive) must start where the upload ends."""
        allowance = await self._allowance(name)
        session = await self._lease(name, raw_id)
        try:
            if content_range is not None and content_range[0] != session.size:
                raise _out_of_order(session)
            writer, hasher = await self._resume(session)
            try:
                received = await self._receive(
                    session.id, body, writer, hasher, allowance, session.size
                )
            except BaseException:
                await _quietly(writer.close())  # the saved state still holds
                raise
            if content_range is not None and received != content_range[1] - content_range[0] + 1:
                await writer.suspend()  # state below is not saved: these bytes are dropped
                raise RegistryError(
                    ErrorCode.BLOB_UPLOAD_INVALID,
                    f"Content-Range announced {content_range[1] - content_range[0] + 1} bytes, "
                    f"received {received}",
                )
            state = await writer.suspend()
            await sessions.save(self.pool, session.id, writer.size, hasher.state(), state)
            await writer.drop_superseded()
            return UploadState(session.id, writer.size, received)
        finally:
            await sessions.release(self.pool, session.id)

    async def finish(
        self,
        name: str,
        raw_id: str,
        digest: Digest,
        body: ByteSource | None,
        content_range: tuple[int, int] | None,
    ) -> blob_rows.BlobInfo:
        """PUT: take the last chunk (if any), verify the digest, publish the blob."""
        allowance = await self._allowance(name) if body is not None else None
        session = await self._lease(name, raw_id)
        try:
            if content_range is not None and content_range[0] != session.size:
                raise _out_of_order(session)
            algorithm = digest.algorithm if session.size == 0 else session.algorithm
            if algorithm != digest.algorithm:
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID,
                    f"this upload was hashed with {session.algorithm}; "
                    f"use a {session.algorithm} digest or a monolithic upload",
                )
            writer, hasher = await self._resume(session, algorithm)
            if body is not None:
                try:
                    await self._receive(session.id, body, writer, hasher, allowance, session.size)
                except BaseException:
                    await _quietly(writer.close())
                    raise
            info = await self._publish(name, digest, writer, hasher, session.id)
        except RegistryError as err:
            if err.code is ErrorCode.DIGEST_INVALID:  # a wrong digest ends the upload
                await _quietly(self.driver.discard_upload(str(session.id), session.driver_state))
                await sessions.delete(self.pool, session.id)
            else:
                await sessions.release(self.pool, session.id)
            raise
        except BaseException:
            await sessions.release(self.pool, session.id)
            raise
        return info

    async def monolithic(self, name: str, digest: Digest, body: ByteSource) -> blob_rows.BlobInfo:
        """The whole blob in one go: POST with ?digest=, a mirrored layer, content the
        pipeline made. A session row all the same, so GC knows the bytes are wanted; it
        is created leased to this call and ended by the transaction that publishes the
        blob (two statements instead of a start, a lease and a delete)."""
        allowance = await self._allowance(name)
        session_id = uuid.uuid4()
        await sessions.create(
            self.pool, name, [session_id], {}, lease_seconds=self.config.lease_seconds
        )
        writer: UploadWriter | None = None
        try:
            state = await self.driver.begin_upload(str(session_id))
            if state:
                await sessions.save(self.pool, session_id, 0, None, state)
            writer = await self.driver.resume_upload(str(session_id), state, 0)
            checked = getattr(body, "verifies", None) == digest
            hasher = None if checked else ResumableHasher(digest.algorithm)
            await self._receive(session_id, body, writer, hasher, allowance)
            return await self._publish(name, digest, writer, hasher, session_id)
        except BaseException:
            await self._drop({session_id: writer})
            raise

    async def store_many(self, name: str, contents: Sequence[bytes]) -> list[blob_rows.BlobInfo]:
        """Content this process holds in memory (small mirrored blobs, attestation layers
        and their configs), stored in one transaction. Each new blob goes straight to its
        content key while its digest lock is held, so it needs no upload session and no
        staging copy; a crash in between leaves an unrecorded object that GC sweeps. The
        digests are computed here from the bytes themselves."""
        by_digest = {Digest.of(data): data for data in contents}
        verified = [
            blob_rows.Verified(
                digest,
                len(data),
                content_key(digest),
                functools.partial(self.driver.put, digest, data),
                _nothing,
            )
            for digest, data in by_digest.items()
        ]
        try:
            return await blob_rows.finalize_many(self.pool, name, verified)
        except StorageError as exc:
            raise RegistryError(ErrorCode.UNAVAILABLE, f"storage failed: {exc}") from exc

    async def _drop(self, uploads: dict[uuid.UUID, UploadWriter | None]) -> None:
        """Undo single-call uploads that failed: their data (through the writer when
        there is one) and their sessions."""
        for session_id, writer in uploads.items():
            if writer is not None:
                await _quietly(writer.abort())
            else:
                await _quietly(self.driver.discard_upload(str(session_id), {}))
        await _quietly(sessions.delete_many(self.pool, list(uploads)))

    async def _resume(
        self, session: sessions.Session, algorithm: str | None = None
    ) -> tuple[UploadWriter, ResumableHasher]:
        if session.size == 0:
            hasher = ResumableHasher(algorithm or session.algorithm)
        else:
            resumed = ResumableHasher.resume(session.algorithm, session.hash_state)
            if resumed is None:
                raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload state is unusable")
            hasher = resumed
        try:
            writer = await self.driver.resume_upload(
                str(session.id), session.driver_state, session.size
            )
        except UploadLost as exc:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, str(exc)) from exc
        return writer, hasher

    async def _receive(
        self,
        session_id: uuid.UUID,
        body: ByteSource,
        writer: UploadWriter,
        hasher: ResumableHasher | None,
        allowance: quotas.Allowance | None = None,
        already: int = 0,
    ) -> int:
        """Pump the body while keeping the session lease alive; refused once the upload
        (`already` bytes from earlier requests + this body) exceeds the allowance."""

        async def keep_lease() -> None:
            while True:
                await asyncio.sleep(self.config.lease_seconds / 3)
                await sessions.extend(self.pool, session_id, self.config.lease_seconds)

        keeper = asyncio.create_task(keep_lease())
        try:
            return await self._pump(body, writer, hasher, allowance, already)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _pump(
        self,
        body: ByteSource,
        writer: UploadWriter,
        hasher: ResumableHasher | None,
        allowance: quotas.Allowance | None = None,
        already: int = 0,
    ) -> int:
        """Copy the body into `writer`, hashing on the way (unless the body verifies
        itself); return the bytes received.

        Chunks are kept as they arrived (no copy) and handed over in batches of about
        1 MiB: one batch is hashed and written in worker threads while the next one is
        read from the socket, so at most two batches are held per upload.
        """
        total = 0
        pending: asyncio.Future[None] | None = None
        batch: list[bytes] = []
        batched = 0

        async def process(chunks: list[bytes]) -> None:
            if hasher is None:
                await writer.write(chunks)
            else:
                await asyncio.gather(
                    asyncio.to_thread(_hash_all, hasher, chunks), writer.write(chunks)
                )

        limit = self.driver.max_object_size
        declared = getattr(body, "declared", None)
        if limit is not None and declared is not None and already + declared > limit:
            raise _too_large(f"this upload would reach {already + declared} bytes", limit)
        if declared is not None:
            writer.expect(declared)
        try:
            await self.budget.acquire(2 * CHUNK)
        except StorageError as exc:
            raise RegistryError(ErrorCode.UNAVAILABLE, str(exc)) from exc
        try:
            while True:
                chunk = await body.readany()
                if not chunk:
                    break
                total += len(chunk)
                if allowance is not None and already + total > allowance.remaining:
                    raise allowance.exceeded(already + total)
                batch.append(chunk)
                batched += len(chunk)
                if batched >= CHUNK:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(process(batch))
                    batch, batched = [], 0
            if pending is not None:
                await pending
                pending = None
            if batch:
                await process(batch)
        except ObjectTooLarge as exc:
            raise _too_large(str(exc), limit) from exc
        except StorageError as exc:
            raise RegistryError(ErrorCode.UNAVAILABLE, f"storage failed: {exc}") from exc
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            self.budget.release(2 * CHUNK)
        return total

    async def _publish(
        self,
        name: str,
        digest: Digest,
        writer: UploadWriter,
        hasher: ResumableHasher | None,
        session_id: uuid.UUID,
    ) -> blob_rows.BlobInfo:
        """Verify the digest (None: the source did), then record the blob and end the
        session in one transaction."""
        actual = digest if hasher is None else hasher.digest()
        if actual != digest:
            await _quietly(writer.abort())
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                detail={"expected": str(digest), "received": str(actual), "size": writer.size},
            )
        try:
            upload = blob_rows.Verified(
                digest,
                writer.size,
                writer.destination(digest),
                lambda: writer.commit(digest),
                writer.abort,
            )
            return await blob_rows.finalize(self.pool, name, upload, session=session_id)
        except StorageError as exc:
            await _quietly(writer.abort())
            raise RegistryError(ErrorCode.UNAVAILABLE, f"storage failed: {exc}") from exc

    async def expire(self) -> int:
        """Discard sessions idle past the configured expiry; return how many."""
        count = 0
        for session in await sessions.expired(
            self.pool, self.config.session_expiry, self.config.empty_session_expiry
        ):
            await _quietly(self.driver.discard_upload(str(session.id), session.driver_state))
            await sessions.delete(self.pool, session.id)
            count += 1
        return count


def _out_of_order(session: sessions.Session) -> RegistryError:
    end = max(session.size - 1, 0)
    return RegistryError(
        ErrorCode.RANGE_INVALID,
        f"chunk must start at byte {session.size}",
        headers={"Range": f"0-{end}", "Docker-Upload-UUID": str(session.id)},
    )


def _too_large(problem: str, limit: int | None) -> RegistryError:
    """A blob larger than the store can hold: refused (413, not a 503 to retry)."""
    return RegistryError(
        ErrorCode.BLOB_UPLOAD_INVALID,
        f"blob too large for this registry's storage: {problem}",
        detail={"limit": limit},
        status=413,
    )


def _hash_all(hasher: ResumableHasher, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


async def _quietly(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except Exception as exc:  # cleanup must not hide the original error
        log.warning("cleanup failed", error=str(exc))


async def _nothing() -> None:
    """Nothing to discard: bytes stored with `put` are written only when new."""
