"""Filesystem driver: content-addressed files, uploads appended in place, sendfile on GET.

Layout under the root: `blobs/<alg>/<2 hex>/<hex>` for blobs and `uploads/<id>` for
uploads in progress. A committed upload is fsync'ed and renamed into place, so a
blob file either is complete or does not exist.

Creating a directory is the dearest thing ext4 does on the write path (it looks for an
inode group to spread directories over), so none is made per blob: an upload is one
file (older versions made `uploads/<id>/data`, which is still resumed and removed), and
the 256 `blobs/sha256/<2 hex>` folders are made once, when the driver starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from registry.oci.digest import Digest
from registry.storage.base import (
    BlobMissing,
    DriverState,
    SocketBody,
    StorageError,
    StoredObject,
    UploadLost,
    content_key,
)

CHUNK = 1 << 20
_NOT_A_NAME = frozenset(("", ".", ".."))
IOV_MAX = 1024
"""pwritev(2) takes at most this many buffers per call (Linux UIO_MAXIOV)."""


class _FileUploadWriter:
    def __init__(self, root: Path, path: Path, size: int, fsync: bool) -> None:
        self._root = root
        self._upload = path
        """The upload's own entry under uploads/ (its file, or an older version's folder)."""
        self._path = path
        self._size = size
        self._resumed_at = size
        self._fsync = fsync
        self._fd: int | None = None

    @property
    def size(self) -> int:
        return self._size

    def _open(self) -> int:
        if self._fd is None:
            try:
                try:
                    self._fd = os.open(self._path, os.O_WRONLY)
                except IsADirectoryError:  # begun by an older version
                    self._path = self._path / _LEGACY_DATA
                    self._fd = os.open(self._path, os.O_WRONLY)
            except FileNotFoundError as exc:
                raise UploadLost(f"upload data {self._upload.name} is gone") from exc
            actual = os.fstat(self._fd).st_size
            if actual < self._resumed_at:
                raise UploadLost(
                    f"upload data is shorter ({actual}) than recorded ({self._resumed_at})"
                )
        return self._fd

    def _write(self, chunks: Sequence[bytes], offset: int) -> None:
        fd = self._open()
        views = [memoryview(c) for c in chunks]
        while views:
            written = os.pwritev(fd, views[:IOV_MAX], offset)
            offset += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]

    def expect(self, size: int) -> None:
        """Nothing to plan: bytes go to the file as they come."""

    async def write(self, chunks: Sequence[bytes]) -> None:
        offset = self._size
        self._size += sum(len(c) for c in chunks)
        await asyncio.to_thread(self._write, chunks, offset)

    def _finish(self) -> None:
        fd = self._open()
        os.ftruncate(fd, self._size)  # drop bytes a crashed earlier request left behind
        if self._fsync:
            os.fsync(fd)
        os.close(fd)
        self._fd = None

    async def suspend(self) -> DriverState:
        await asyncio.to_thread(self._finish)
        return {}

    async def drop_superseded(self) -> None:
        return None

    def destination(self, digest: Digest) -> str:
        return content_key(digest)

    async def commit(self, digest: Digest) -> str:
        key = self.destination(digest)
        target = self._root / key

        def finish_and_move() -> None:
            self._finish()
            target.parent.mkdir(parents=True, exist_ok=True)
            self._path.replace(target)
            if self._path.name == _LEGACY_DATA:
                _remove_upload_folder(self._path.parent)

        await asyncio.to_thread(finish_and_move)
        return key

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await asyncio.to_thread(os.close, fd)

    async def abort(self) -> None:
        def remove() -> None:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            _remove_upload(self._upload)

        await asyncio.to_thread(remove)


_LEGACY_DATA = "data"
"""An upload's file inside its own folder, as versions before 2026-11 kept it."""


def _remove_upload_folder(folder: Path) -> None:
    """After a commit the folder is empty: one rmdir, not a tree walk."""
    try:
        folder.rmdir()
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


def _folders(base: Path) -> list[Path]:
    """The folders under `base` that hold files, `base` included, in walk order."""
    return [Path(dirpath) for dirpath, _dirs, files in os.walk(base) if files]


def _stored_in(root: Path, folder: Path) -> list[StoredObject]:
    """The files directly in `folder` (one blob shard)."""
    out: list[StoredObject] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return out
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        out.append(
            StoredObject(
                str(Path(entry.path).relative_to(root)),
                st.st_size,
                datetime.fromtimestamp(st.st_mtime, UTC),
            )
        )
    return out


def _remove_upload(path: Path) -> None:
    """An upload's folder, or the file a `put` was writing when the process died."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class FilesystemDriver:
    """Blobs as files under `root`."""

    name = "filesystem"
    max_object_size: int | None = None

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self._root = root.resolve()

    async def start(self) -> None:
        await asyncio.to_thread(self._make_folders)

    def _make_folders(self) -> None:
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        shards = self.root / "blobs" / "sha256"
        shards.mkdir(parents=True, exist_ok=True)
        present = {p.name for p in shards.iterdir()}
        for prefix in (f"{n:02x}" for n in range(256)):
            if prefix not in present:
                (shards / prefix).mkdir(exist_ok=True)

    async def close(self) -> None:
        return None

    def _upload_path(self, upload_id: str) -> Path:
        return self.root / "uploads" / upload_id

    def _path(self, key: str) -> Path:
        """The file of `key`, which must stay under the root. Checked on the key's text,
        not with `resolve()`: that is an lstat per path component on every blob GET (a
        third of the event loop's time when 64 clients pull small blobs). The keys are the
        service's own; a symlink inside the storage folder is the operator's doing."""
        if key.startswith("/") or any(part in _NOT_A_NAME for part in key.split("/")):
            raise BlobMissing(f"key {key!r} is outside the storage root")
        return self._root / key

    async def begin_upload(self, upload_id: str) -> DriverState:
        await asyncio.to_thread(self._upload_path(upload_id).touch)
        return {}

    async def put(self, digest: Digest, data: bytes) -> str:
        key = content_key(digest)
        await self.put_object(key, data)
        return key

    async def put_object(self, key: str, data: bytes) -> None:
        target = self._path(key)
        partial = self.root / "uploads" / f"put-{uuid.uuid4()}"

        def write_and_move() -> None:
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial.replace(target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise

        try:
            await asyncio.to_thread(write_and_move)
        except OSError as exc:
            raise StorageError(f"cannot store {key}: {exc}") from exc

    async def resume_upload(
        self, upload_id: str, state: DriverState, size: int
    ) -> _FileUploadWriter:
        return _FileUploadWriter(self.root, self._upload_path(upload_id), size, self.fsync)

    async def discard_upload(self, upload_id: str, state: DriverState) -> None:
        await asyncio.to_thread(_remove_upload, self._upload_path(upload_id))

    async def stat(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            fh = await asyncio.to_thread(self._path(key).open, "rb")
        except FileNotFoundError as exc:
            raise BlobMissing(key) from exc
        try:
            fh.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = await asyncio.to_thread(fh.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def socket_body(self, key: str, offset: int, length: int) -> SocketBody | None:
        return None  # local_path: sendfile(2) instead

    async def presign(self, key: str) -> str | None:
        return None

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._path(key).unlink)
        except FileNotFoundError:
            return

    async def delete_many(self, keys: Sequence[str]) -> dict[str, str]:
        """All of them in one worker thread: one hand-off for a GC batch, not one per file."""
        return await asyncio.to_thread(self._unlink_all, list(keys))

    def _unlink_all(self, keys: list[str]) -> dict[str, str]:
        failed = {}
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except (OSError, StorageError) as exc:
                failed[key] = str(exc)
        return failed

    async def list_blobs(self, page: int = 1000) -> AsyncIterator[StoredObject]:
        """One folder at a time, read in a worker thread: memory stays that of one shard
        (1/256 of the blobs), and the event loop never waits for a stat (no pages)."""
        base = self.root / "blobs"
        folders = await asyncio.to_thread(_folders, base)
        for folder in folders:
            for found in await asyncio.to_thread(_stored_in, self.root, folder):
                yield found

    async def list_uploads(self) -> AsyncIterator[tuple[str, datetime]]:
        base = self.root / "uploads"
        entries = await asyncio.to_thread(lambda: list(base.iterdir()) if base.exists() else [])
        for entry in entries:
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            yield entry.name, datetime.fromtimestamp(mtime, UTC)
