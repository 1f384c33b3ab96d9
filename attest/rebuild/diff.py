"""What a comparison of an upstream image and its rebuild found, as data.

The shapes here are what the CLI prints as a table, the API returns as JSON and the
rebuild attestation summarises. Every list is capped; a cap that was hit is reported
as such (`total` > number listed), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from attest.statements import ConfigComparison, LayerComparison
from registry.oci.digest import Digest

Change = Literal["added", "removed", "modified"]


@dataclass(frozen=True, slots=True)
class DiffLimits:
    """How much a comparison may read and report."""

    max_differences: int = 200
    """File and field differences listed over the whole image (all are counted)."""
    max_entries: int = 1_000_000
    """Entries of one original layer held in its file table."""
    max_layer_bytes: int = 64 << 30
    """Uncompressed bytes of one layer."""
    max_ratio: int = 1000
    """Uncompressed / compressed bytes, checked past 64 MiB."""
    max_header_bytes: int = 1 << 20
    max_path_bytes: int = 4096
    max_config_bytes: int = 4 << 20
    max_value_chars: int = 160
    """Config values longer than this are shortened in the report."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One attribute with its value on each side (None where the side lacks it)."""

    name: str
    original: str | None
    rebuilt: str | None

    def to_json(self) -> dict[str, Any]:
        return {"field": self.name, "original": self.original, "rebuilt": self.rebuilt}

    def describe(self) -> str:
        return f"{self.name}: {self.original if self.original is not None else '∅'} → " + (
            self.rebuilt if self.rebuilt is not None else "∅"
        )


@dataclass(frozen=True, slots=True)
class FileChange:
    """A path that differs between the original and the rebuilt layer."""

    path: str
    change: Change
    fields: tuple[FieldChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "change": self.change,
            "fields": [f.to_json() for f in self.fields],
        }

    def describe(self) -> str:
        if self.change != "modified":
            return f"{self.change} {self.path}"
        return f"modified {self.path} ({', '.join(f.name for f in self.fields)})"


@dataclass(frozen=True, slots=True)
class LayerDiff:
    """One layer position: digests on both sides and, when the content differs, files."""

    index: int
    original: Digest | None
    rebuilt: Digest | None
    original_diff_id: Digest | None = None
    rebuilt_diff_id: Digest | None = None
    files: tuple[FileChange, ...] = ()
    total: int = 0
    """Differing paths found, listed or not."""
    notes: tuple[str, ...] = ()
    """Findings that are not about one path (tar order, compression, diff_id mismatch)."""
    incomplete: str | None = None

    @property
    def identical(self) -> bool:
        return self.original is not None and self.original == self.rebuilt

    @property
    def content_identical(self) -> bool:
        """Same uncompressed tar: only the compression differs, if anything."""
        return self.identical or (
            self.original_diff_id is not None and self.original_diff_id == self.rebuilt_diff_id
        )

    def summary(self, limit: int) -> list[str]:
        """At most `limit` lines (plus one stating the cap) for the attestation."""
        head = [*self.notes, *([f"incomplete: {self.incomplete}"] if self.incomplete else [])]
        head = head[:limit]
        shown = self.files[: max(limit - len(head), 0)]
        lines = head + [f.describe() for f in shown]
        hidden = self.total - len(shown)
        if hidden > 0:
            lines.append(f"… {hidden} more differing paths not listed")
        return lines

    def comparison(self, limit: int = 20) -> LayerComparison:
        return LayerComparison(
            index=self.index,
            original=self.original,
            rebuilt=self.rebuilt,
            identical=self.identical,
            differences=() if self.identical else tuple(self.summary(limit)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "original": None if self.original is None else str(self.original),
            "rebuilt": None if self.rebuilt is None else str(self.rebuilt),
            "original_diff_id": None
            if self.original_diff_id is None
            else str(self.original_diff_id),
            "rebuilt_diff_id": None if self.rebuilt_diff_id is None else str(self.rebuilt_diff_id),
            "identical": self.identical,
            "content_identical": self.content_identical,
            "files": [f.to_json() for f in self.files],
            "total": self.total,
            "notes": list(self.notes),
            "incomplete": self.incomplete,
        }


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """The image configs: digests and the JSON fields that differ (`history[2].created`)."""

    original: Digest | None
    rebuilt: Digest | None
    fields: tuple[FieldChange, ...] = ()
    total: int = 0

    @property
    def identical(self) -> bool:
        return self.original is not None and self.original == self.rebuilt

    def comparison(self, limit: int = 20) -> ConfigComparison:
        lines = [f.describe() for f in self.fields[:limit]]
        if self.total > len(lines):
            lines.append(f"… {self.total - len(lines)} more differing fields not listed")
        if not self.identical and not self.total:
            lines.append("only rootfs.diff_ids differ (see the layers)")
        return ConfigComparison(self.original, self.rebuilt, self.identical, tuple(lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "original": None if self.original is None else str(self.original),
            "rebuilt": None if self.rebuilt is None else str(self.rebuilt),
            "identical": self.identical,
            "fields": [f.to_json() for f in self.fields],
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class ImageDiff:
    """The whole comparison. `identical` is the only thing "reproduced" may rest on."""

    original: Digest
    rebuilt: Digest
    manifest: tuple[FieldChange, ...] = ()
    config: ConfigDiff | None = None
    layers: tuple[LayerDiff, ...] = ()
    max_differences: int = 0
    truncated: bool = False
    """Some differences were counted but not listed (the cap was hit)."""
    seconds: float = 0.0
    bytes_read: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return self.original == self.rebuilt

    @property
    def differing_paths(self) -> int:
        return sum(layer.total for layer in self.layers)

    def layer_comparisons(self, limit: int = 20) -> list[LayerComparison]:
        return [layer.comparison(limit) for layer in self.layers]

    def to_json(self) -> dict[str, Any]:
        return {
            "original": str(self.original),
            "rebuilt": str(self.rebuilt),
            "identical": self.identical,
            "manifest": [f.to_json() for f in self.manifest],
            "config": None if self.config is None else self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
            "differing_paths": self.differing_paths,
            "max_differences": self.max_differences,
            "truncated": self.truncated,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
            "bytes_read": self.bytes_read,
        }
