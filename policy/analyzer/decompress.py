"""Layer bytes: compressed chunks in, bounded decompressed chunks out.

The event loop reads a blob and hands chunks to the thread that analyses it through a
`BlobPipe`; `open_layer` wraps the pipe in a decompressor that never returns more than
`OUT_CHUNK` bytes at a time, so a decompression bomb costs time (bounded by the limits)
but never memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import time
import zlib
from collections.abc import AsyncIterator
from typing import Final, Protocol

import zstandard

from policy.analyzer.limits import AnalysisLimits, LimitExceeded

OUT_CHUNK: Final = 1 << 20
PIPE_DEPTH: Final = 8

GZIP: Final = "gzip"
ZSTD: Final = "zstd"
PLAIN: Final = "plain"


class BlobError(Exception):
    """The blob could not be read to its end (missing, or digest mismatch)."""


class LayerFormatError(Exception):
    """The layer's bytes are not valid for its compression."""


class BlobPipe:
    """Chunks of one blob, pumped by the event loop and pulled by a worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(PIPE_DEPTH)
        self._done = False
        self._closed = False
        self.bytes_read = 0

    async def pump(self, stream: AsyncIterator[bytes]) -> None:
        """Feed `stream` into the pipe (run as a task on the loop)."""
        try:
            async for chunk in stream:
                await self._queue.put(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported to the worker, which turns it into a finding
            await self._queue.put(exc)
            return
        await self._queue.put(None)

    def close(self) -> None:
        """The loop side gives up (cancelled or finished): the worker stops waiting."""
        self._closed = True

    def next_chunk(self) -> bytes | None:
        """The next compressed chunk, or None at the end (worker thread side)."""
        if self._done:
            return None
        future = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop)
        while True:
            try:
                item = future.result(timeout=0.5)
                break
            except concurrent.futures.TimeoutError:
                if self._closed:
                    future.cancel()
                    raise BlobError("reading was cancelled") from None
        if item is None:
            self._done = True
            return None
        if isinstance(item, BaseException):
            self._done = True
            raise BlobError(str(item)) from item
        self.bytes_read += len(item)
        return item

    def drain(self) -> None:
        """Read to the end without decompressing, so the reader verifies the digest."""
        while self.next_chunk() is not None:
            pass

    def read(self, size: int = -1) -> bytes:
        """File-like `read` for zstandard's stream reader: one chunk at a time."""
        return self.next_chunk() or b""


class ChunkSource(Protocol):
    def next_chunk(self) -> bytes | None: ...

    def read(self, size: int = -1) -> bytes: ...


class Decompressor(Protocol):
    def read(self) -> bytes:
        """The next decompressed bytes (at most about OUT_CHUNK), b"" at the end."""
        ...


class _Plain:
    def __init__(self, pipe: ChunkSource) -> None:
        self._pipe = pipe

    def read(self) -> bytes:
        return self._pipe.next_chunk() or b""


class _Gzip:
    def __init__(self, pipe: ChunkSource) -> None:
        self._pipe = pipe
        self._obj = zlib.decompressobj(31)
        self._tail = b""
        self._started = False
        self._finished = False

    def read(self) -> bytes:
        while not self._finished:
            data = self._obj.unconsumed_tail or self._tail
            self._tail = b""
            if not data:
                chunk = self._pipe.next_chunk()
                if chunk is None:
                    if self._started and not self._obj.eof:
                        raise LayerFormatError("gzip stream is truncated")
                    self._finished = True
                    return b""
                data = chunk
            self._started = True
            try:
                out = self._obj.decompress(data, OUT_CHUNK)
            except zlib.error as exc:
                raise LayerFormatError(f"gzip stream is corrupt: {exc}") from exc
            if self._obj.eof:
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                self._started = False
                if rest.startswith(b"\x1f\x8b"):
                    self._tail = rest  # another gzip member follows
                elif rest.strip(b"\0"):
                    raise LayerFormatError("data after the end of the gzip stream")
            if out:
                return out
        return b""


class _Zstd:
    def __init__(self, pipe: ChunkSource) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            pipe,  # type: ignore[arg-type]  # any object with read() will do read_size=1 << 20, read_across_frames=True, closefd=False
        )

    def read(self) -> bytes:
        try:
            out: bytes = self._reader.read(OUT_CHUNK)
        except zstandard.ZstdError as exc:
            raise LayerFormatError(f"zstd stream is corrupt: {exc}") from exc
        return out


def compression_of(media_type: str) -> str | None:
    """gzip / zstd / plain for a layer media type, None if it is no tar layer."""
    base = media_type.split(";", 1)[0].strip().lower()
    if base.endswith(("tar+gzip", ".tar.gzip", "tar.gzip")) or base.endswith("+gzip"):
        return GZIP
    if base.endswith(("tar+zstd", ".tar.zstd")):
        return ZSTD
    if base.endswith((".tar", "v1.tar", "diff.tar")):
        return PLAIN
    return None


def sniff(first: bytes) -> str:
    """Decide the compression from magic bytes (Docker layers lie about it sometimes)."""
    if first.startswith(b"\x1f\x8b"):
        return GZIP
    if first.startswith(b"\x28\xb5\x2f\xfd"):
        return ZSTD
    return PLAIN


class _Prefixed:
    """A pipe whose first chunk was already taken (to sniff the compression)."""

    def __init__(self, first: bytes, pipe: BlobPipe) -> None:
        self._first: bytes | None = first
        self._pipe = pipe

    def next_chunk(self) -> bytes | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._pipe.next_chunk()

    def read(self, size: int = -1) -> bytes:
        return self.next_chunk() or b""


class Metered:
    """Decompressed bytes with the byte, ratio and time limits applied."""

    def __init__(
        self,
        inner: Decompressor,
        pipe: BlobPipe,
        limits: AnalysisLimits,
        deadline: float,
        budget: int,
    ) -> None:
        self._inner = inner
        self._pipe = pipe
        self._limits = limits
        self._deadline = deadline
        self._budget = budget
        self.produced = 0
        self.hasher: hashlib._Hash | None = None
        """Set to hash the decompressed tar (to check the config's diff_id)."""

    def read(self) -> bytes:
        out = self._inner.read()
        self.produced += len(out)
        if self.hasher is not None:
            self.hasher.update(out)
        if self.produced > self._budget:
            raise LimitExceeded(
                "max_uncompressed_bytes",
                f"layers expand to more than {self._limits.max_uncompressed_bytes} bytes",
            )
        if self.produced > self._limits.ratio_floor:
            consumed = max(self._pipe.bytes_read, 1)
            if self.produced > consumed * self._limits.max_ratio:
                raise LimitExceeded(
                    "max_ratio",
                    f"layer expands more than {self._limits.max_ratio}x "
                    f"({consumed} compressed bytes gave {self.produced})",
                )
        if time.monotonic() > self._deadline:
            raise LimitExceeded(
                "max_seconds", f"analysis took longer than {self._limits.max_seconds} s"
            )
        return out


def open_layer(
    pipe: BlobPipe, media_type: str, limits: AnalysisLimits, deadline: float, budget: int
) -> Metered:
    """A metered decompressing reader for one layer; compression from its magic bytes."""
    first = pipe.next_chunk() or b""
    kind = sniff(first) if first else (compression_of(media_type) or PLAIN)
    source = _Prefixed(first, pipe)
    inner: Decompressor
    if kind == GZIP:
        inner = _Gzip(source)
    elif kind == ZSTD:
        inner = _Zstd(source)
    else:
        inner = _Plain(source)
    return Metered(inner, pipe, limits, deadline, budget)
