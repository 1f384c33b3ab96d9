"""`analyze_chart`: read one Helm chart from the registry, unpack it under limits, render
it, and list every workload and image it would deploy.

What is kept (`ChartAnalysis`) is plain data with `to_json`, stored with the verdict; the
pod specs themselves are kept in memory only for the criteria (`policy.chart.checks`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from policy.analyzer.model import Finding
from policy.chart.archive import UnpackedChart, unpack_chart
from policy.chart.limits import ChartLimits
from policy.chart.render import render_chart
from policy.chart.workloads import ManifestError, Workload, workloads
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError as OciManifestError
from registry.oci.manifest import parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader
from registry.oci.reference import Reference, ReferenceError

CHART_ANALYZER_VERSION: Final = "zoll-chart-analyzer/1.0"


class ChartAnalysisError(Exception):
    """The manifest cannot be read as a chart at all (no manifest, no chart layer)."""


@dataclass(frozen=True, slots=True)
class ChartImage:
    """One image reference as the rendered chart writes it, and who uses it."""

    reference: str
    registry: str | None
    repository: str | None
    tag: str | None
    digest: str | None
    used_by: tuple[str, ...]
    """`Kind/name container (field path)` of every container that runs it."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "used_by": list(self.used_by),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChartImage:
        return cls(
            data["reference"],
            data.get("registry"),
            data.get("repository"),
            data.get("tag"),
            data.get("digest"),
            tuple(data.get("used_by") or ()),
            data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class ChartMeta:
    """Name, version and where it sits (`""` for the chart, `charts/sub` for a subchart)."""

    name: str
    version: str
    path: str
    app_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": self.path,
            "app_version": self.app_version,
        }


@dataclass(slots=True)
class ChartAnalysis:
    manifest_digest: str
    chart: ChartMeta | None
    subcharts: list[ChartMeta] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    images: list[ChartImage] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    render_error: str | None = None
    engine: str | None = None
    complete: bool = True
    files: int = 0
    uncompressed_size: int = 0
    seconds: float = 0.0
    analyzer_version: str = CHART_ANALYZER_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest_digest": self.manifest_digest,
            "chart": self.chart.to_json() if self.chart else None,
            "subcharts": [s.to_json() for s in self.subcharts],
            "workloads": [w.to_json() for w in self.workloads],
            "images": [i.to_json() for i in self.images],
            "findings": [f.to_json() for f in self.findings],
            "render_error": self.render_error,
            "engine": self.engine,
            "complete": self.complete,
            "files": self.files,
            "uncompressed_size": self.uncompressed_size,
            "seconds": self.seconds,
            "analyzer_version": self.analyzer_version,
        }


def _text(value: Any, limit: int = 200) -> str:
    return str(value)[:limit] if value is not None else ""


def _meta(files: dict[str, bytes], path: str) -> ChartMeta | None:
    raw = files.get(f"{path}/Chart.yaml" if path else "Chart.yaml")
    if raw is None:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    app = data.get("appVersion")
    return ChartMeta(_text(data.get("name")), _text(data.get("version")), path, _text(app) or None)


def _subcharts(files: dict[str, bytes]) -> list[ChartMeta]:
    found = []
    for name in sorted(files):
        if name.endswith("/Chart.yaml") and ("/charts/" in name or name.startswith("charts/")):
            meta = _meta(files, name[: -len("/Chart.yaml")])
            if meta is not None:
                found.append(meta)
    return found


def chart_images(found: list[Workload]) -> list[ChartImage]:
    """Every distinct image reference with the containers that run it."""
    users: dict[str, list[str]] = {}
    for workload in found:
        for container in workload.containers:
            users.setdefault(container.image, []).append(
                f"{workload.ref} container {container.name} ({container.path}.image)"
            )
    images = []
    for reference, used_by in users.items():
        try:
            ref = Reference.parse(reference)
        except ReferenceError as exc:
            images.append(ChartImage(reference, None, None, None, None, tuple(used_by), str(exc)))
            continue
        images.append(
            ChartImage(
                reference,
                ref.registry,
                ref.name,
                ref.tag,
                str(ref.digest) if ref.digest else None,
                tuple(used_by),
            )
        )
    return images


async def analyze_chart(
    reader: ContentReader,
    manifest_digest: Digest | str,
    values: dict[str, Any] | None = None,
    limits: ChartLimits | None = None,
    *,
    namespace: str = "default",
) -> ChartAnalysis:
    """Analyse one chart manifest; raises ChartAnalysisError only when nothing can be read."""
    limits = limits or ChartLimits()
    started = time.monotonic()
    reference = str(manifest_digest)
    try:
        fetched = await reader.get_manifest(reference)
        manifest = parse_manifest(fetched.raw, fetched.media_type)
    except (ContentNotFound, ContentCorrupt, OciManifestError) as exc:
        raise ChartAnalysisError(f"cannot read manifest {reference}: {exc}") from exc
    layers = [d for d in manifest.layers if mt.base(d.media_type) == mt.HELM_CHART]
    if len(layers) != 1:
        raise ChartAnalysisError(f"{reference} has {len(layers)} chart layers, not one")
    analysis = ChartAnalysis(str(manifest.digest), None)
    layer = layers[0]
    if layer.size > limits.max_archive_bytes:
        analysis.findings.append(
            Finding(
                "limit",
                f"the chart archive is {layer.size} bytes, over {limits.max_archive_bytes}",
                None,
                None,
                {"limit": "max_archive_bytes"},
            )
        )
        analysis.complete = False
        return _done(analysis, started)
    try:
        data = await reader.read_blob(layer.digest, limits.max_archive_bytes)
    except (ContentNotFound, ContentCorrupt) as exc:
        analysis.findings.append(Finding("corrupt", f"chart archive unreadable: {exc}"))
        analysis.complete = False
        return _done(analysis, started)
    unpacked: UnpackedChart = await asyncio.to_thread(unpack_chart, data, limits)
    del data
    analysis.findings.extend(unpacked.findings)
    analysis.files = len(unpacked.files)
    analysis.uncompressed_size = unpacked.uncompressed
    analysis.chart = _meta(unpacked.files, "")
    analysis.subcharts = _subcharts(unpacked.files)
    if not unpacked.complete or any(f.kind == "traversal" for f in unpacked.findings):
        analysis.complete = False
        return _done(analysis, started)  # a chart that only a lenient reader takes is not rendered
    result = await render_chart(
        unpacked.files,
        values,
        name=analysis.chart.name if analysis.chart else "chart",
        namespace=namespace,
        limits=limits,
    )
    analysis.engine = result.engine
    if result.error is not None:
        analysis.render_error = result.error
        analysis.complete = False
        return _done(analysis, started)
    try:
        analysis.workloads = await asyncio.to_thread(workloads, result.manifests, limits)
    except ManifestError as exc:
        analysis.render_error = str(exc)
        analysis.complete = False
        return _done(analysis, started)
    analysis.images = chart_images(analysis.workloads)
    return _done(analysis, started)


def _done(analysis: ChartAnalysis, started: float) -> ChartAnalysis:
    analysis.seconds = round(time.monotonic() - started, 3)
    return analysis
