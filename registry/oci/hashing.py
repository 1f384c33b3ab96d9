"""Streaming hashers whose state can be saved and resumed in another process.

A chunked upload may continue on a different worker, so the running SHA state is
exported after every chunk and stored with the upload session. OpenSSL's low-level
`SHA256_*`/`SHA512_*` API keeps its state in a plain struct, which we copy out. Where
that API is missing, `ResumableHasher.state()` returns None and the caller re-hashes the
stored prefix instead (correct, only slower).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from dataclasses import dataclass
from typing import Final

from registry.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class _Algo:
    ctx_size: int
    digest_size: int
    init: str
    update: str
    final: str


_ALGOS: Final = {
    "sha256": _Algo(112, 32, "SHA256_Init", "SHA256_Update", "SHA256_Final"),
    "sha512": _Algo(216, 64, "SHA512_Init", "SHA512_Update", "SHA512_Final"),
}


def _load_libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    for algo in _ALGOS.values():
        for fn in (algo.init, algo.update, algo.final):
            if not hasattr(lib, fn):
                return None
    for algo in _ALGOS.values():
        getattr(lib, algo.init).argtypes = [ctypes.c_void_p]
        getattr(lib, algo.update).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        getattr(lib, algo.final).argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


_LIB: Final = _load_libcrypto()
RESUMABLE: Final = _LIB is not None
"""Whether hash state can be exported here (needed for uploads spanning requests)."""


class ResumableHasher:
    """SHA-256/512 over a byte stream; `state()` and `resume()` carry it across processes.

    `update` releases the GIL for the whole call (ctypes does), so hashing in a thread
    pool runs in parallel with the event loop.
    """

    def __init__(self, algorithm: str = "sha256", state: bytes | None = None) -> None:
        if algorithm not in _ALGOS:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._algo = _ALGOS[algorithm]
        self._fallback: hashlib._Hash | None = None
        if _LIB is None:
            if state is not None:
                raise ValueError("hash state cannot be resumed without libcrypto")
            self._fallback = hashlib.new(algorithm)
            return
        if state is not None:
            if len(state) != self._algo.ctx_size:
                raise ValueError("hash state has the wrong size")
            self._ctx = ctypes.create_string_buffer(state, self._algo.ctx_size)
        else:
            self._ctx = ctypes.create_string_buffer(self._algo.ctx_size)
            getattr(_LIB, self._algo.init)(self._ctx)

    @classmethod
    def resume(cls, algorithm: str, state: bytes | None) -> ResumableHasher | None:
        """A hasher continuing from `state`, or None when state cannot be resumed here."""
        if state is None or _LIB is None:
            return None
        try:
            return cls(algorithm, state)
        except ValueError:
            return None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes; bytes and writable buffers are hashed without a copy."""
        if self._fallback is not None:
            self._fallback.update(data)
            return
        if isinstance(data, memoryview):
            data = data if (not data.readonly and data.contiguous) else data.tobytes()
        size = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        if size == 0:
            return
        assert _LIB is not None
        update = getattr(_LIB, self._algo.update)
        if isinstance(data, bytes):
            update(self._ctx, data, size)
        else:
            update(self._ctx, (ctypes.c_char * size).from_buffer(data), size)

    def state(self) -> bytes | None:
        """The resumable state, or None when this platform cannot export it."""
        if self._fallback is not None:
            return None
        return bytes(self._ctx.raw)

    def digest(self) -> Digest:
        """The digest so far; the hasher stays usable."""
        if self._fallback is not None:
            return Digest(self.algorithm, self._fallback.copy().hexdigest())
        assert _LIB is not None
        ctx = ctypes.create_string_buffer(self._ctx.raw, self._algo.ctx_size)
        out = ctypes.create_string_buffer(self._algo.digest_size)
        getattr(_LIB, self._algo.final)(out, ctx)
        return Digest(self.algorithm, out.raw.hex())
