"""RFC 9162 §2.1 written out literally (recursive MTH, PATH, PROOF) as the test oracle.

Deliberately slow and close to the RFC text, sharing no code with `attest.tlog`.
"""

from __future__ import annotations

import hashlib


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(hashes: list[bytes]) -> bytes:
    """MTH over leaf *hashes* (the leaf hashing is already done)."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


def path(m: int, hashes: list[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, hashes[:k]), mth(hashes[k:])]
    return [*path(m - k, hashes[k:]), mth(hashes[:k])]


def _subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [mth(hashes)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, hashes[:k], b), mth(hashes[k:])]
    return [*_subproof(m - k, hashes[k:], False), mth(hashes[:k])]


def proof(m: int, hashes: list[bytes]) -> list[bytes]:
    if m in (0, len(hashes)):
        return []
    return _subproof(m, hashes, True)
