"""Layer bytes for a worker thread: async blob chunks in, bounded decompressed chunks out.

The comparison hashes every file of a layer, which is CPU work, so it runs in a thread
and pulls the blob from the event loop one chunk at a time (`LoopChunks`). Whatever the
compression, no read returns more than `OUT_CHUNK` bytes, so a decompression bomb costs
time (bounded by `max_bytes` and `max_ratio`) but never memory. The decompressed stream
is hashed on the way, which gives the layer's diff_id for free.

This is deliberately separate from `policy.analyzer`'s streamer: `attest` may import only
`registry.oci`, and the comparison needs owners, times and xattrs the analyzer drops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import zlib
from collections.abc import AsyncIterator
from typing import Final, Protocol

import zstandard

from registry.oci.digest import Digest

OUT_CHUNK: Final = 1 << 20
RATIO_FLOOR: Final = 64 << 20


class StreamLimit(Exception):
    """A layer exceeded a bound; `limit` names it (as in `DiffLimits`)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class LayerFormatError(Exception):
    """The bytes are not valid for the layer's compression."""


class Chunks(Protocol):
    def read(self) -> bytes:
        """The next chunk; b"" at the end."""
        ...


class LoopChunks:
    """Pull an async byte stream from a worker thread, one chunk per `read`.

    `cancel()` (called from the loop when the comparing task is cancelled) makes the
    thread's next read fail instead of waiting for a loop that no longer serves it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: AsyncIterator[bytes]) -> None:
        self._loop = loop
        self._stream = stream
        self._cancelled = False
        self._done = False
        self.bytes_read = 0

    async def _next(self) -> bytes:
        async for chunk in self._stream:
            if chunk:
                return chunk
        return b""

    def cancel(self) -> None:
        self._cancelled = True

    def read(self) -> bytes:
        if self._done:
            return b""
        future = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
        while True:
            if self._cancelled:
                future.cancel()
                raise asyncio.CancelledError("layer comparison was cancelled")
            try:
                chunk = future.result(timeout=0.5)
                break
            except concurrent.futures.TimeoutError:
                continue
        if not chunk:
            self._done = True
        self.bytes_read += len(chunk)
        return chunk


class _Prefixed:
    """A chunk source whose first chunk was already taken to sniff the compression."""

    def __init__(self, first: bytes, rest: Chunks) -> None:
        self._first = first
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            return first
        return self._rest.read()


class _Plain:
    def __init__(self, source: _Prefixed) -> None:
        self._source = source
        self._buf = b""

    def read(self) -> bytes:
        if not self._buf:
            self._buf = self._source.read()
        out, self._buf = self._buf[:OUT_CHUNK], self._buf[OUT_CHUNK:]
        return out


class _Gzip:
    """Multi-member gzip, at most OUT_CHUNK bytes per read."""

    def __init__(self, source: _Prefixed) -> None:
        self._source = source
        self._obj = zlib.decompressobj(31)
        self._pending = b""
        self._started = False
        self._ended = False

    def read(self) -> bytes:
        while not self._ended:
            data = self._obj.unconsumed_tail or self._pending
            self._pending = b""
            if not data:
                data = self._source.read()
                if not data:
                    if self._started and not self._obj.eof:
                        raise LayerFormatError("the gzip stream is truncated")
                    self._ended = True
                    return b""
            self._started = True
            try:
                out = self._obj.decompress(data, OUT_CHUNK)
            except zlib.error as exc:
                raise LayerFormatError(f"the gzip stream is corrupt: {exc}") from exc
            if self._obj.eof:
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                self._started = False
                if rest.startswith(b"\x1f\x8b"):
                    self._pending = rest
                elif rest.strip(b"\0"):
                    raise LayerFormatError("data follows the end of the gzip stream")
            if out:
                return out
        return b""


class _Zstd:
    def __init__(self, source: _Prefixed) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            source,  # type: ignore[arg-type]  # any object with read() will do
            read_size=OUT_CHUNK,
            read_across_frames=True,
            closefd=False,
        )

    def read(self) -> bytes:
        try:
            out: bytes = self._reader.read(OUT_CHUNK)
        except zstandard.ZstdError as exc:
            raise LayerFormatError(f"the zstd stream is corrupt: {exc}") from exc
        return out


class Decompressed:
    """Decompressed layer bytes, metered and hashed (the hash is the diff_id)."""

    def __init__(self, source: LoopChunks | Chunks, *, max_bytes: int, max_ratio: int) -> None:
        self._source = source
        first = source.read()
        prefixed = _Prefixed(first, source)
        self.compression: str
        self._inner: _Plain | _Gzip | _Zstd
        if first.startswith(b"\x1f\x8b"):
            self.compression, self._inner = "gzip", _Gzip(prefixed)
        elif first.startswith(b"\x28\xb5\x2f\xfd"):
            self.compression, self._inner = "zstd", _Zstd(prefixed)
        else:
            self.compression, self._inner = "none", _Plain(prefixed)
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._hasher = hashlib.sha256()
        self.produced = 0

    def read(self) -> bytes:
        out = self._inner.read()
        if not out:
            return b""
        self.produced += len(out)
        self._hasher.update(out)
        if self.produced > self._max_bytes:
            raise StreamLimit(
                "max_layer_bytes", f"the layer expands to more than {self._max_bytes} bytes"
            )
        consumed = getattr(self._source, "bytes_read", 0)
        if consumed and self.produced > RATIO_FLOOR and self.produced > consumed * self._max_ratio:
            raise StreamLimit("max_ratio", f"the layer expands more than {self._max_ratio} times")
        return out

    def drain(self) -> None:
        """Read to the end so the diff_id covers everything (and the blob is verified)."""
        while self.read():
            pass

    def diff_id(self) -> Digest:
        return Digest("sha256", self._hasher.hexdigest())
