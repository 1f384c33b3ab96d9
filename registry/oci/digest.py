"""Content digests (`algorithm:encoded`) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

_DIGEST_RE: Final = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
HEX_LENGTH: Final = {"sha256": 64, "sha512": 128}
"""Registered algorithms and the length of their lowercase hex encoding."""
_HEX_RE: Final = re.compile(r"^[a-f0-9]+$")


class DigestError(ValueError):
    """A string is not a digest Zoll can verify; `unsupported` separates unknown algorithms."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated digest of a registered algorithm."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate; raise DigestError with a reason a client can act on."""
        match = _DIGEST_RE.match(value)
        if match is None:
            raise DigestError(f"invalid digest {value[:160]!r}: expected algorithm:hex")
        algorithm, encoded = match.group(1), match.group(2)
        length = HEX_LENGTH.get(algorithm)
        if length is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}", unsupported=True)
        if len(encoded) != length or _HEX_RE.match(encoded) is None:
            raise DigestError(
                f"invalid {algorithm} digest: expected {length} lowercase hex characters"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of bytes already in memory (manifests, configs, small blobs)."""
        if algorithm not in HEX_LENGTH:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}", unsupported=True)
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def verify(self, data: bytes) -> bool:
        """Whether `data` hashes to this digest."""
        return hashlib.new(self.algorithm, data).hexdigest() == self.encoded

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def is_digest(value: str) -> bool:
    """Whether a reference string looks like a digest (contains ':'), as opposed to a tag."""
    return ":" in value
