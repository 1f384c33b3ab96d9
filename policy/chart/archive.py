"""Unpack a Helm chart archive (and the subchart archives inside it) under hard limits.

A chart is a gzip'd tar whose entries sit under one top folder (`<chart>/Chart.yaml`,
`<chart>/templates/…`, `<chart>/charts/<sub>.tgz`). It is read here with the analyzer's
hostile-input machinery — bounded gzip output (`policy.analyzer.decompress`), the shared
tar walker (`registry.oci.tarformat`) with capped headers and names — and one byte budget
over the chart and every nested archive, so a bomb costs at most `max_uncompressed_bytes`
of time and never more memory than the files a chart may hold. Names that climb out of
the chart, links and devices are findings and are not unpacked. Nested `charts/*.tgz`
become folders, so the template engine never decompresses anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from policy.analyzer.decompress import LayerFormatError, _Gzip
from policy.analyzer.limits import LimitExceeded
from policy.analyzer.model import Finding
from policy.analyzer.tree import split
from policy.chart.limits import ChartLimits
from registry.oci.tarformat import TarBytes, TarError, TarWalker

CHUNK: Final = 1 << 20


class _Slices:
    """A bytes object handed out a chunk at a time (the `ChunkSource` of `_Gzip`)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def next_chunk(self) -> bytes | None:
        if self._pos >= len(self._data):
            return None
        chunk = bytes(self._data[self._pos : self._pos + CHUNK])
        self._pos += len(chunk)
        return chunk

    def read(self, size: int = -1) -> bytes:
        return self.next_chunk() or b""


@dataclass(slots=True)
class UnpackedChart:
    """The chart's files by path under its root (`Chart.yaml`, `charts/sub/values.yaml`)."""

    files: dict[str, bytes] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    uncompressed: int = 0
    complete: bool = True
    archives: list[str] = field(default_factory=list)
    """Nested subchart archives that were unpacked into folders."""

    def stop(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.complete = False


class _Metered:
    """Decompressed bytes, counted against the one budget of the whole chart."""

    def __init__(self, inner: _Gzip, chart: UnpackedChart, limits: ChartLimits) -> None:
        self._inner = inner
        self._chart = chart
        self._limits = limits

    def read(self) -> bytes:
        try:
            out = self._inner.read()
        except LayerFormatError as exc:
            raise TarError(str(exc)) from exc
        self._chart.uncompressed += len(out)
        if self._chart.uncompressed > self._limits.max_uncompressed_bytes:
            raise LimitExceeded(
                "max_uncompressed_bytes",
                f"the chart expands to more than {self._limits.max_uncompressed_bytes} bytes",
            )
        return out


def _is_subchart_archive(path: str) -> bool:
    parent, _, name = path.rpartition("/")
    return name.endswith(".tgz") and (parent == "charts" or parent.endswith("/charts"))


def _walk(data: bytes, prefix: str, depth: int, chart: UnpackedChart, limits: ChartLimits) -> None:
    if depth > limits.max_depth:
        raise LimitExceeded("max_depth", f"subcharts nest deeper than {limits.max_depth}")
    if not data.startswith(b"\x1f\x8b"):
        raise TarError(f"{prefix or 'the chart'} is not a gzip'd tar archive")
    walker = TarWalker(
        TarBytes(_Metered(_Gzip(_Slices(data)), chart, limits)),
        max_header_bytes=limits.max_header_bytes,
        max_path_bytes=limits.max_path_bytes,
        errors="backslashreplace",
        limit=LimitExceeded,
    )
    nested: list[tuple[str, bytes]] = []
    while (entry := walker.next()) is not None:
        parts, problem = split(entry.name)
        where = prefix + entry.name
        if parts is None or problem:
            chart.findings.append(
                Finding("traversal", f"{where}: {problem or 'escapes the chart'}", None, where)
            )
            continue
        if entry.kind == "dir":
            continue
        if entry.kind != "file":
            chart.findings.append(
                Finding(
                    "unsupported", f"{where}: a {entry.kind} has no place in a chart", None, where
                )
            )
            continue
        if len(parts) < 2:
            chart.findings.append(
                Finding("malformed", f"{where}: outside the chart's top folder", None, where)
            )
            continue
        path = prefix + "/".join(parts[1:])
        if entry.size > limits.max_file_bytes:
            raise LimitExceeded(
                "max_file_bytes", f"{path} is {entry.size} bytes, over {limits.max_file_bytes}"
            )
        if len(chart.files) >= limits.max_files:
            raise LimitExceeded("max_files", f"more than {limits.max_files} files in the chart")
        content = b"".join(walker.data(CHUNK))
        if _is_subchart_archive(path):
            nested.append((path, content))
        elif path in chart.files:
            chart.findings.append(Finding("malformed", f"{path} appears twice", None, path))
        else:
            chart.files[path] = content
    for path, content in nested:
        folder = path[: -len(".tgz")] + "/"
        chart.archives.append(path)
        _walk(content, folder, depth + 1, chart, limits)


def unpack_chart(data: bytes, limits: ChartLimits | None = None) -> UnpackedChart:
    """Every file of the chart and its subcharts; limits and malformed input become
    findings (and `complete` False), never exceptions."""
    limits = limits or ChartLimits()
    chart = UnpackedChart()
    if len(data) > limits.max_archive_bytes:
        chart.stop(
            Finding(
                "limit",
                f"the chart archive is {len(data)} bytes, over {limits.max_archive_bytes}",
                None,
                None,
                {"limit": "max_archive_bytes"},
            )
        )
        return chart
    try:
        _walk(data, "", 0, chart, limits)
    except LimitExceeded as exc:
        chart.stop(Finding("limit", exc.message, None, None, {"limit": exc.limit}))
    except TarError as exc:
        chart.stop(Finding("malformed", f"the chart archive is not a valid tar.gz: {exc}"))
    if chart.complete and "Chart.yaml" not in chart.files:
        chart.stop(Finding("malformed", "the archive has no Chart.yaml in its top folder"))
    return chart
