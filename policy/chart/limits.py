"""Bounds on what reading one Helm chart may cost, so a hostile chart costs a known amount.

The chart archive is unpacked under these limits (like image layers under
`policy.analyzer.limits`), subcharts included, before any template engine sees it; the
renderer runs in a child process under its own memory and time bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from policy.analyzer.limits import MiB


@dataclass(frozen=True, slots=True)
class ChartLimits:
    """How much one chart analysis may read, hold and take."""

    max_archive_bytes: int = 16 * MiB
    """The chart archive blob (compressed)."""
    max_uncompressed_bytes: int = 64 * MiB
    """Decompressed bytes over the chart and every nested subchart archive."""
    max_file_bytes: int = 5 * MiB
    """One file of the chart (Helm's own loader refuses larger ones too)."""
    max_files: int = 10_000
    """Files over the chart and its subcharts."""
    max_path_bytes: int = 4096
    max_header_bytes: int = 1 * MiB
    max_depth: int = 5
    """Subcharts nested in subcharts, as archives or folders."""
    max_rendered_bytes: int = 32 * MiB
    """Rendered manifests over all templates."""
    max_documents: int = 10_000
    """Kubernetes objects in the rendered manifests."""
    render_seconds: float = 60.0
    """Wall-clock time of the template engine."""
    render_memory_bytes: int = 2048 * MiB
    """Address space of the rendering child process (RLIMIT_AS)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChartLimits:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
