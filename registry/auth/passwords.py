"""Secrets stored only as slow hashes (scrypt), verified off the event loop.

Format: `scrypt$<log2 n>$<r>$<p>$<salt base64>$<key base64>`, so the cost can be raised
later and old hashes still verify. A hash takes about 2^n × r × 128 bytes of memory
(32 MiB at the default n = 2^15, r = 8); `Hasher` runs at most `concurrency` at once per
process so a burst of logins cannot exhaust memory or starve the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

R = 8
P = 1
KEY_BYTES = 32


class SecretHashError(ValueError):
    """A stored hash that is not in Zoll's format (corrupted or from elsewhere)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p, dklen=KEY_BYTES
    )


def hash_secret(secret: str, log2_n: int = 15) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(secret, salt, log2_n, R, P)
    return f"scrypt${log2_n}${R}${P}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True, slots=True)
class _Parsed:
    log2_n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def _parse(encoded: str) -> _Parsed:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise SecretHashError("not a Zoll scrypt hash")
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise SecretHashError(f"malformed scrypt hash: {exc}") from None
    if not (1 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16 and salt and key):
        raise SecretHashError("scrypt parameters out of range")
    return _Parsed(log2_n, r, p, salt, key)


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether `secret` matches `encoded` (constant-time comparison)."""
    parsed = _parse(encoded)
    candidate = _scrypt(secret, parsed.salt, parsed.log2_n, parsed.r, parsed.p)
    return hmac.compare_digest(candidate, parsed.key)


def new_secret() -> str:
    """A random secret for robots and generated passwords (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class Hasher:
    """Hash and verify in worker threads, a bounded number at a time."""

    def __init__(self, log2_n: int = 15, concurrency: int = 2) -> None:
        self.log2_n = log2_n
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, secret: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_secret, secret, self.log2_n)

    async def verify(self, secret: str, encoded: str | None) -> bool:
        """False for a wrong secret; a missing hash costs as much as a wrong one."""
        async with self._slots:
            if encoded is None:
                await asyncio.to_thread(_verify_dummy, secret, self.log2_n)
                return False
            return await asyncio.to_thread(verify_secret, secret, encoded)


_DUMMIES: dict[int, str] = {}


def _verify_dummy(secret: str, log2_n: int) -> None:
    """Spend what a real verification costs, so unknown names cannot be told apart."""
    if log2_n not in _DUMMIES:
        _DUMMIES[log2_n] = hash_secret("zoll: no such principal", log2_n)
    verify_secret(secret, _DUMMIES[log2_n])
