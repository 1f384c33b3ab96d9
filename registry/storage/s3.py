"""S3 driver (aiobotocore): streaming multipart uploads, ranged reads, presigned GETs.

S3 cannot rename, so an upload whose digest is unknown until the end is written as a
multipart upload to its own key (`blobs/u/<upload id>`) and completed in place; small
uploads go to `blobs/<alg>/<2 hex>/<hex>` in one PUT. The registry records the key.
Between requests of a chunked upload, bytes that do not yet fill a part (S3 needs
≥ 5 MiB per part except the last) wait in a tail object named after the offset it
ends at, so a retried request never overwrites what a saved state points to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from registry.config import S3Config
from registry.oci.digest import Digest
from registry.storage.base import BlobMissing, DriverState, StorageError, StoredObject, UploadLost
from registry.storage.budget import ByteBudget
from registry.storage.filesystem import content_key

CHUNK = 1 << 20
PARTS_BEFORE_GROWTH = 1000
"""After this many parts the part size doubles, so no blob hits S3's 10,000-part cap."""


def _missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class _S3UploadWriter:
    def __init__(self, driver: S3Driver, upload_id: str, state: DriverState, size: int) -> None:
        self._d = driver
        self._id = upload_id
        self._old_tail: str | None = state.get("tail")
        self._mpu: str | None = state.get("mpu")
        self._parts: list[dict[str, Any]] = list(state.get("parts", []))
        self._size = size
        self._buffer = bytearray()
        self._reserved = 0
        self._inflight: list[asyncio.Task[None]] = []
        self._new_tail: str | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def _mpu_key(self) -> str:
        return self._d.key(f"blobs/u/{self._id}")

    def _part_size(self) -> int:
        growth = len(self._parts) // PARTS_BEFORE_GROWTH
        return int(self._d.config.part_size * (2**growth))

    async def load_tail(self) -> None:
        if not self._old_tail:
            return
        data = await self._d.get_bytes(self._old_tail)
        if data is None:
            raise UploadLost(f"pending bytes of upload {self._id} are gone")
        await self._reserve()
        self._buffer += data

    async def _reserve(self) -> None:
        if self._reserved == 0:
            amount = self._part_size() + CHUNK
            await self._d.budget.acquire(amount)
            self._reserved = amount

    async def write(self, chunks: Sequence[bytes]) -> None:
        for data in chunks:
            await self._reserve()
            self._buffer += data
            self._size += len(data)
            if len(self._buffer) >= self._part_size():
                await self._flush_part()

    async def _flush_part(self) -> None:
        """Send the buffer as the next part. The part's reservation goes with its task and
        is released when the task ends, however it ends (cancelled before it ran too);
        until the task exists it stays the writer's, released by suspend/commit/abort."""
        while len(self._inflight) >= self._d.config.parts_in_flight:
            await self._inflight.pop(0)  # an earlier part's failure surfaces here
        if self._mpu is None:
            resp = await self._d.call("create_multipart_upload", Key=self._mpu_key)
            self._mpu = resp["UploadId"]
        number = len(self._parts) + 1
        self._parts.append({"n": number, "etag": None, "size": len(self._buffer)})
        data, reserved = bytes(self._buffer), self._reserved
        self._buffer, self._reserved = bytearray(), 0
        task = asyncio.create_task(self._send_part(number, data))
        task.add_done_callback(lambda _: self._d.budget.release(reserved))
        self._inflight.append(task)

    async def _send_part(self, number: int, data: bytes) -> None:
        resp = await self._d.call(
            "upload_part",
            Key=self._mpu_key,
            UploadId=self._mpu,
            PartNumber=number,
            Body=data,
        )
        self._parts[number - 1]["etag"] = resp["ETag"]

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
        self._buffer = bytearray()

    async def suspend(self) -> DriverState:
        try:
            await self._drain()
            tail = None
            if self._buffer:
                tail = self._d.key(f"uploads/{self._id}/tail.{self._size}")
                if tail != self._old_tail:
                    await self._d.call("put_object", Key=tail, Body=bytes(self._buffer))
            self._new_tail = tail
            return {"mpu": self._mpu, "parts": self._parts, "tail": tail}
        finally:
            await self._release()

    async def drop_superseded(self) -> None:
        if self._old_tail and self._old_tail != self._new_tail:
            await self._d.delete(self._old_tail)

    async def commit(self, digest: Digest) -> str:
        try:
            if self._mpu is None:
                key = self._d.key(content_key(digest))
                await self._d.call("put_object", Key=key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    await self._flush_part()
                await self._drain()
                await self._d.call(
                    "complete_multipart_upload",
                    Key=self._mpu_key,
                    UploadId=self._mpu,
                    MultipartUpload={
                        "Parts": [{"PartNumber": p["n"], "ETag": p["etag"]} for p in self._parts]
                    },
                )
                key = self._mpu_key
        finally:
            await self._release()
        if self._old_tail:
            await self._d.delete(self._old_tail)
        return key[len(self._d.config.prefix) :]

    async def close(self) -> None:
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

    def __init__(self, config: S3Config, budget: ByteBudget) -> None:
        if not config.endpoint:
            raise StorageError("storage.s3.endpoint is not set")
        self.config = config
        self.budget = budget
        self._stack = AsyncExitStack()
        self._client: Any = None

    def key(self, relative: str) -> str:
        return f"{self.config.prefix}{relative}"

    async def start(self) -> None:
        session = get_session()
        aio_config = AioConfig(
            max_pool_connections=64,
            s3={"addressing_style": "path"},
            retries={"max_attempts": self.config.max_attempts, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=self.config.endpoint,
                region_name=self.config.region,
                aws_access_key_id=self.config.access_key or "zoll",
                aws_secret_access_key=self.config.secret_key or "zoll",
                config=aio_config,
            )
        )
        await self._ensure_bucket()

    async def _ensure_bucket(self, attempts: int = 30) -> None:
        """Wait for the bucket (creating it if allowed); a fresh SeaweedFS needs a moment."""
        for attempt in range(attempts):
            try:
                await self._client.head_bucket(Bucket=self.config.bucket)
                return
            except (ClientError, BotoCoreError) as exc:
                if self.config.create_bucket:
                    with contextlib.suppress(ClientError, BotoCoreError):
                        await self._client.create_bucket(Bucket=self.config.bucket)
                if attempt == attempts - 1:
                    raise StorageError(f"bucket {self.config.bucket!r} unusable: {exc}") from exc
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        await self._stack.aclose()

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 call on our bucket, with backend errors mapped to StorageError."""
        try:
            return await getattr(self._client, operation)(Bucket=self.config.bucket, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise BlobMissing(str(kwargs.get("Key", ""))) from exc
            raise StorageError(f"S3 {operation} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {operation} failed: {exc}") from exc

    async def get_bytes(self, key: str) -> bytes | None:
        try:
            resp = await self.call("get_object", Key=key)
        except BlobMissing:
            return None
        async with resp["Body"] as body:
            data: bytes = await body.read()
            return data

    async def begin_upload(self, upload_id: str) -> DriverState:
        return {}

    async def put(self, digest: Digest, data: bytes) -> str:
        key = content_key(digest)
        await self.put_object(key, data)
        return key

    async def put_object(self, key: str, data: bytes) -> None:
        await self.call("put_object", Key=self.key(key), Body=data)

    async def resume_upload(self, upload_id: str, state: DriverState, size: int) -> _S3UploadWriter:
        writer = _S3UploadWriter(self, upload_id, state, size)
        await writer.load_tail()
        return writer

    async def discard_upload(self, upload_id: str, state: DriverState) -> None:
        if state.get("mpu"):
            with contextlib.suppress(StorageError):
                await self.call(
                    "abort_multipart_upload",
                    Key=self.key(f"blobs/u/{upload_id}"),
                    UploadId=state["mpu"],
                )
        async for obj in self._list(self.key(f"uploads/{upload_id}/")):
            await self.delete(obj.key, absolute=True)

    async def stat(self, key: str) -> int | None:
        try:
            resp = await self.call("head_object", Key=self.key(key))
        except BlobMissing:
            return None
        return int(resp["ContentLength"])

    async def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        kwargs: dict[str, Any] = {"Key": self.key(key)}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"
        resp = await self.call("get_object", **kwargs)
        async with resp["Body"] as body:
            while True:
                try:
                    chunk = await body.read(CHUNK)
                except (TimeoutError, BotoCoreError, OSError) as exc:
                    raise StorageError(f"S3 read of {key} failed: {exc}") from exc
                if not chunk:
                    break
                yield chunk

    def local_path(self, key: str) -> Path | None:
        return None

    async def presign(self, key: str) -> str | None:
        url: str = await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.config.bucket, "Key": self.key(key)},
            ExpiresIn=self.config.presign_seconds,
        )
        return url

    async def delete(self, key: str, *, absolute: bool = False) -> None:
        with contextlib.suppress(BlobMissing):
            await self.call("delete_object", Key=key if absolute else self.key(key))

    async def _list(self, prefix: str) -> AsyncIterator[StoredObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.config.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"])
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 listing of {prefix} failed: {exc}") from exc

    async def list_blobs(self) -> AsyncIterator[StoredObject]:
        strip = len(self.config.prefix)
        async for obj in self._list(self.key("blobs/")):
            yield StoredObject(obj.key[strip:], obj.size, obj.modified)

    async def list_uploads(self) -> AsyncIterator[tuple[str, datetime]]:
        latest: dict[str, datetime] = {}
        async for obj in self._list(self.key("uploads/")):
            upload_id = obj.key[len(self.key("uploads/")) :].split("/", 1)[0]
            latest[upload_id] = max(obj.modified, latest.get(upload_id, obj.modified))
        try:
            resp = await self.call("list_multipart_uploads", Prefix=self.key("blobs/u/"))
            for upload in resp.get("Uploads", []):
                upload_id = upload["Key"].rsplit("/", 1)[-1]
                latest[upload_id] = max(
                    upload["Initiated"], latest.get(upload_id, upload["Initiated"])
                )
        except StorageError:
            pass  # some S3 implementations cannot list multipart uploads
        for upload_id, modified in latest.items():
            yield upload_id, modified
