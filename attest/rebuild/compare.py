"""Compare an upstream image with its rebuild, from the manifest down to single files.

Equal manifest digests settle it. Otherwise the manifests and the configs are compared
field by field, and each layer position: equal digests settle a layer; otherwise both
layers are streamed (a diff_id in a config is a claim, not a proof) into a file-level
diff, which also tells when only the compression differs. The original layer's file
table is built first and the rebuilt layer is checked against it while it streams, so
one table is in memory at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from attest.rebuild.diff import (
    ConfigDiff,
    DiffLimits,
    FieldChange,
    FileChange,
    ImageDiff,
    LayerDiff,
)
from attest.rebuild.layerfiles import FIELDS, FileRecord, LayerScan, Visit, scan_layer
from attest.rebuild.layerstream import LoopChunks
from registry.oci import mediatypes as mt
from registry.oci.consumers import run_consumer
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest, DigestError
from registry.oci.manifest import Manifest, ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader

Progress = Callable[[str], None]


class CompareError(Exception):
    """A manifest or config could not be read, so there is nothing to compare."""


@dataclass
class _Budget:
    """Differences listed over the whole image; everything is counted regardless."""

    limit: int
    listed: int = 0
    truncated: bool = False

    def take(self) -> bool:
        if self.listed >= self.limit:
            self.truncated = True
            return False
        self.listed += 1
        return True


@dataclass
class _Side:
    reader: ContentReader
    manifest: Manifest
    config: dict[str, Any] | None = None
    config_error: str | None = None
    diff_ids: list[Digest | None] = field(default_factory=list)


async def _image(reader: ContentReader, digest: Digest, what: str) -> Manifest:
    try:
        fetched = await reader.get_manifest(str(digest))
        manifest = parse_manifest(fetched.raw, fetched.media_type)
    except (ContentNotFound, ContentCorrupt, ManifestError) as exc:
        raise CompareError(f"cannot read the {what} manifest {digest}: {exc}") from exc
    if manifest.media_type not in mt.IMAGE_MANIFESTS or manifest.config is None:
        raise CompareError(f"the {what} {digest} is not an image manifest ({manifest.media_type})")
    return manifest


async def _config(side: _Side, limits: DiffLimits) -> None:
    assert side.manifest.config is not None
    try:
        raw = await side.reader.read_blob(side.manifest.config.digest, limits.max_config_bytes)
        body = json.loads(raw)
    except (ContentNotFound, ContentCorrupt, ValueError) as exc:
        side.config_error = str(exc)
        return
    if not isinstance(body, dict):
        side.config_error = "the config is not a JSON object"
        return
    side.config = body
    rootfs = body.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    for value in ids if isinstance(ids, list) else []:
        try:
            side.diff_ids.append(Digest.parse(value) if isinstance(value, str) else None)
        except DigestError:
            side.diff_ids.append(None)


def _flatten(value: Any, path: str, out: dict[str, str], limit: int) -> None:
    """`{"a": [{"b": 1}]}` → `{"a[0].b": "1"}`; values as compact JSON, shortened."""
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}" if path else str(key), out, limit)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out, limit)
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out[path or "."] = text if len(text) <= limit else text[:limit] + "…"


def _field_changes(
    original: dict[str, str], rebuilt: dict[str, str], budget: _Budget
) -> tuple[tuple[FieldChange, ...], int]:
    changes: list[FieldChange] = []
    total = 0
    for key in sorted(original.keys() | rebuilt.keys()):
        a, b = original.get(key), rebuilt.get(key)
        if a != b:
            total += 1
            if budget.take():
                changes.append(FieldChange(key, a, b))
    return tuple(changes), total


def _manifest_fields(a: Manifest, b: Manifest, budget: _Budget) -> tuple[FieldChange, ...]:
    def facts(m: Manifest) -> dict[str, str]:
        out = {"mediaType": m.media_type, "layers": str(len(m.layers))}
        if m.artifact_type:
            out["artifactType"] = m.artifact_type
        for key, value in m.annotations.items():
            out[f"annotations.{key}"] = value
        for i, layer in enumerate(m.layers):
            out[f"layers[{i}].mediaType"] = layer.media_type
        return out

    return _field_changes(facts(a), facts(b), budget)[0]


def _at(items: tuple[Descriptor, ...] | list[Digest | None], i: int) -> Any:
    return items[i] if i < len(items) else None


class _LayerFiles:
    """The file-level comparison of one layer position."""

    def __init__(self, limits: DiffLimits, budget: _Budget) -> None:
        self.limits = limits
        self.budget = budget
        self.table: dict[str, FileRecord] = {}
        self.changes: list[FileChange] = []
        self.total = 0
        self.out_of_order = False
        self._last_position = -1
        self.original_complete = True

    def _add(self, change: FileChange) -> None:
        self.total += 1
        if self.budget.take():
            self.changes.append(change)

    def take(self, path: str, record: FileRecord) -> bool:
        if path not in self.table and len(self.table) >= self.limits.max_entries:
            return False
        self.table[path] = record
        return True

    def check(self, path: str, record: FileRecord) -> bool:
        original = self.table.pop(path, None)
        if original is None:
            if self.original_complete:
                self._add(FileChange(path, "added", (FieldChange("type", None, record.kind),)))
            return True
        if original.position < self._last_position:
            self.out_of_order = True
        self._last_position = original.position
        if original == record:
            return True
        fields = tuple(
            FieldChange(name, original.value(name), record.value(name))
            for name in FIELDS
            if original.value(name) != record.value(name)
        )
        if fields:
            self._add(FileChange(path, "modified", fields))
        return True

    def removed(self) -> None:
        if not self.original_complete:
            return
        for path, record in sorted(self.table.items(), key=lambda item: item[1].position):
            self._add(FileChange(path, "removed", (FieldChange("type", record.kind, None),)))
        self.table.clear()


async def _scan(
    reader: ContentReader, digest: Digest, visit: Visit, limits: DiffLimits
) -> LayerScan:
    """Stream one blob through `visit` in a worker thread."""
    chunks = LoopChunks(asyncio.get_running_loop(), reader.open_blob(digest))
    try:
        return await run_consumer(
            scan_layer,
            chunks,
            visit,
            max_layer_bytes=limits.max_layer_bytes,
            max_ratio=limits.max_ratio,
            max_header_bytes=limits.max_header_bytes,
            max_path_bytes=limits.max_path_bytes,
        )
    except asyncio.CancelledError:
        chunks.cancel()
        raise
    except (ContentNotFound, ContentCorrupt) as exc:
        return LayerScan(None, 0, 0, "unknown", f"cannot read {digest}: {exc}")


async def _layer(
    index: int,
    original: _Side,
    rebuilt: _Side,
    limits: DiffLimits,
    budget: _Budget,
) -> tuple[LayerDiff, int]:
    a: Descriptor | None = _at(original.manifest.layers, index)
    b: Descriptor | None = _at(rebuilt.manifest.layers, index)
    a_id: Digest | None = _at(original.diff_ids, index)
    b_id: Digest | None = _at(rebuilt.diff_ids, index)
    base = LayerDiff(index, a.digest if a else None, b.digest if b else None, a_id, b_id)
    if base.identical:
        return base, 0
    files = _LayerFiles(limits, budget)
    notes: list[str] = []
    incomplete: list[str] = []
    scan_a: LayerScan | None = None
    scan_b: LayerScan | None = None
    if a is not None:
        scan_a = await _scan(original.reader, a.digest, files.take, limits)
        if scan_a.incomplete:
            incomplete.append(f"original: {scan_a.incomplete}")
            files.original_complete = False
    if b is not None:
        scan_b = await _scan(rebuilt.reader, b.digest, files.check, limits)
        if scan_b.incomplete:
            incomplete.append(f"rebuilt: {scan_b.incomplete}")
    if scan_b is None or not scan_b.incomplete:
        files.removed()
    files.table.clear()
    for side, scan, claimed in (("original", scan_a, a_id), ("rebuilt", scan_b, b_id)):
        if scan and scan.diff_id and claimed and scan.diff_id != claimed:
            notes.append(f"{side} layer content is {scan.diff_id}, but its config says {claimed}")
    if scan_a is not None and scan_b is not None:
        if scan_a.diff_id is not None and scan_a.diff_id == scan_b.diff_id:
            notes.append("same uncompressed content (diff_id); only the compressed bytes differ")
        if scan_a.compression != scan_b.compression:
            notes.append(f"compression: {scan_a.compression} → {scan_b.compression}")
        if files.out_of_order:
            notes.append("the tar entries are in a different order")
        elif not files.total and not incomplete and scan_a.diff_id != scan_b.diff_id:
            notes.append("same files, but the tar streams differ (headers or padding)")
    read = sum(s.uncompressed_bytes for s in (scan_a, scan_b) if s is not None)
    changes = tuple(sorted(files.changes, key=lambda c: c.path))
    diff = LayerDiff(
        index,
        a.digest if a else None,
        b.digest if b else None,
        scan_a.diff_id if scan_a and scan_a.diff_id else a_id,
        scan_b.diff_id if scan_b and scan_b.diff_id else b_id,
        files=changes,
        total=files.total,
        notes=tuple(notes),
        incomplete="; ".join(incomplete) or None,
    )
    return diff, read


async def compare_images(
    original: ContentReader,
    original_digest: Digest,
    rebuilt: ContentReader,
    rebuilt_digest: Digest,
    limits: DiffLimits | None = None,
    progress: Progress | None = None,
) -> ImageDiff:
    """Compare two image manifests (not indexes); raises CompareError when one is unreadable.

    Unreadable or malformed layers do not raise: their `LayerDiff` says why it is
    incomplete.
    """
    limits = limits or DiffLimits()
    started = time.monotonic()
    a = _Side(original, await _image(original, original_digest, "original"))
    b = _Side(rebuilt, await _image(rebuilt, rebuilt_digest, "rebuilt"))
    if original_digest == rebuilt_digest:
        same = tuple(LayerDiff(i, d.digest, d.digest) for i, d in enumerate(a.manifest.layers))
        assert a.manifest.config is not None
        config = ConfigDiff(a.manifest.config.digest, a.manifest.config.digest)
        return ImageDiff(
            original_digest,
            rebuilt_digest,
            config=config,
            layers=same,
            max_differences=limits.max_differences,
            seconds=time.monotonic() - started,
        )
    budget = _Budget(limits.max_differences)
    manifest_fields = _manifest_fields(a.manifest, b.manifest, budget)
    await _config(a, limits)
    await _config(b, limits)
    assert a.manifest.config is not None and b.manifest.config is not None
    notes = [
        f"{side} config unreadable: {s.config_error}"
        for side, s in (("original", a), ("rebuilt", b))
        if s.config_error
    ]
    flat_a: dict[str, str] = {}
    flat_b: dict[str, str] = {}
    if a.config is not None and b.config is not None:
        _flatten(a.config, "", flat_a, limits.max_value_chars)
        _flatten(b.config, "", flat_b, limits.max_value_chars)
        for flat in (flat_a, flat_b):  # the layers report these, with the files behind them
            for key in [k for k in flat if k.startswith("rootfs.diff_ids")]:
                del flat[key]
    config_fields, config_total = _field_changes(flat_a, flat_b, budget)
    config = ConfigDiff(
        a.manifest.config.digest, b.manifest.config.digest, config_fields, config_total
    )
    layers: list[LayerDiff] = []
    read = 0
    count = max(len(a.manifest.layers), len(b.manifest.layers))
    for index in range(count):
        if progress is not None:
            progress(f"comparing layer {index + 1}/{count}")
        layer, layer_bytes = await _layer(index, a, b, limits, budget)
        layers.append(layer)
        read += layer_bytes
    return ImageDiff(
        original_digest,
        rebuilt_digest,
        manifest=manifest_fields,
        config=config,
        layers=tuple(layers),
        max_differences=limits.max_differences,
        truncated=budget.truncated,
        seconds=time.monotonic() - started,
        bytes_read=read,
        notes=tuple(notes),
    )
