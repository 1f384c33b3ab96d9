"""Bounds on what the analyzer reads, so a hostile image costs a known amount.

Every limit that trips becomes a `Finding` of kind `limit` in the analysis and marks it
incomplete; the analyzer never raises because an image is too big or too strange.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True, slots=True)
class AnalysisLimits:
    """How much one image analysis may read, hold and take."""

    max_layers: int = 256
    """Layers beyond this are not read."""
    max_compressed_bytes: int = 32 * GiB
    """Compressed layer bytes read over all layers."""
    max_uncompressed_bytes: int = 128 * GiB
    """Decompressed tar bytes over all layers."""
    max_ratio: int = 1000
    """Decompressed / compressed bytes of one layer, checked once past `ratio_floor`."""
    ratio_floor: int = 256 * MiB
    """A layer may expand freely up to this size before the ratio counts."""
    max_entries: int = 1_000_000
    """Tar entries over all layers (the final tree holds at most this many)."""
    max_file_bytes: int = 16 * GiB
    """Size of one file in a layer."""
    max_path_bytes: int = 4096
    """Length of one path name."""
    max_header_bytes: int = 1 * MiB
    """PAX or GNU long-name header payload of one entry."""
    max_capture_bytes: int = 64 * MiB
    """One file held in memory for parsing (package databases, JARs)."""
    max_seconds: float = 900.0
    """Wall-clock time for the whole analysis."""
    max_config_bytes: int = 8 * MiB
    """Image config blob."""
    max_listed: int = 1000
    """Paths kept per evidence list (setuid files, world-writable files, …)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalysisLimits:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class LimitExceeded(Exception):
    """Raised inside the analyzer to stop reading; becomes a `limit` finding."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message
