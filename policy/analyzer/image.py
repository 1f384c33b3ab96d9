"""`analyze_image`: read one image manifest's config and layers, never touching disk.

Layers are streamed from the `ContentReader` by the event loop and analysed in a worker
thread (decompression and tar parsing are CPU work); reading the next chunk overlaps
with analysing the current one. A layer that breaks a limit or is malformed ends the
analysis with a finding; everything learnt up to then is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Final

from policy.analyzer.config import ConfigError, parse_config
from policy.analyzer.content import ContentCollector, Fact
from policy.analyzer.decompress import BlobError, BlobPipe, LayerFormatError, open_layer
from policy.analyzer.layercache import CachedFact, CachedLayer, LayerCache
from policy.analyzer.limits import AnalysisLimits, LimitExceeded
from policy.analyzer.model import Finding, ImageAnalysis, ImageConfig, LayerInfo
from policy.analyzer.secrets import scan
from policy.analyzer.summary import summarise
from policy.analyzer.tarstream import ByteStream, TarEntry, TarError, TarReader
from policy.analyzer.tree import FileTree
from registry.oci import mediatypes as mt
from registry.oci.consumers import run_consumer
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader

ANALYZER_VERSION: Final = "zoll-analyzer/1.1"
"""1.1: directories, links, devices and fifos carry no data (as Go's archive/tar reads them)."""
MAX_CACHED_LAYER_ENTRIES: Final = 100_000
"""Layers with more entries are analysed every time (caching them would cost too much)."""
_LAYER_SUFFIXES: Final = (".tar", "tar+gzip", "tar+zstd", "tar.gzip", "diff.tar.gzip")


class AnalysisError(Exception):
    """The image cannot be analysed at all (no manifest, not an image, no config)."""


@dataclass(slots=True)
class _State:
    limits: AnalysisLimits
    deadline: float
    tree: FileTree = field(default_factory=FileTree)
    findings: list[Finding] = field(default_factory=list)
    uncompressed: int = 0
    compressed: int = 0
    stopped: bool = False
    collector: ContentCollector | None = None
    cache: LayerCache | None = None

    def stop(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.stopped = True


def _is_layer(media_type: str) -> bool:
    base = mt.base(media_type)
    return base.endswith(_LAYER_SUFFIXES) or base in (
        mt.OCI_LAYER,
        mt.OCI_LAYER_GZIP,
        mt.OCI_LAYER_ZSTD,
        mt.OCI_LAYER_NONDIST_GZIP,
        mt.DOCKER_LAYER_GZIP,
    )


def _process_layer(
    state: _State, pipe: BlobPipe, desc: Descriptor, info: LayerInfo, diff_id: str | None
) -> None:
    """Worker thread: decompress, parse tar, apply entries, feed file data to collectors."""
    limits = state.limits
    assert state.collector is not None
    collector = state.collector
    budget = limits.max_uncompressed_bytes - state.uncompressed
    source = open_layer(pipe, desc.media_type, limits, state.deadline, budget)
    algorithm = diff_id.partition(":")[0] if diff_id else ""
    if algorithm in ("sha256", "sha512"):
        source.hasher = hashlib.new(algorithm)
    reader = TarReader(ByteStream(source), limits)
    tree = state.tree
    entries: list[TarEntry] = []
    recording = state.cache is not None  # a layer too large to cache is not recorded
    consumed: list[str] = []
    secrets_before = len(collector.secrets)
    try:
        while True:
            entry = reader.next()
            if entry is None:
                break
            info.entries += 1
            if tree.entries >= limits.max_entries:
                raise LimitExceeded(
                    "max_entries", f"more than {limits.max_entries} entries in the layers"
                )
            if recording:
                entries.append(entry)
                recording = len(entries) <= MAX_CACHED_LAYER_ENTRIES
            applied = tree.apply(entry, info.index)
            state.findings.extend(applied.findings)
            if applied.path is not None and entry.kind == "file" and entry.size:
                collector.consume(applied.path, entry.size, info.index, reader.data())
                consumed.append(applied.path)
        reader.stream.drain()
        pipe.drain()
        if source.hasher is not None and f"{algorithm}:{source.hasher.hexdigest()}" != diff_id:
            raise BlobError(f"uncompressed layer does not match the config's diff_id {diff_id}")
        info.complete = True
        if state.cache is not None and recording:
            facts = tuple(
                CachedFact(path, fact.kind, fact.value)
                for path in consumed
                if (fact := collector.facts.get(path)) is not None and fact.layer == info.index
            )
            secrets = tuple((p, f) for p, _, f in collector.secrets[secrets_before:])
            state.cache.put(
                _cache_key(desc, diff_id, limits),
                CachedLayer(tuple(entries), facts, secrets, source.produced),
            )
    except LimitExceeded as exc:
        state.stop(Finding("limit", exc.message, info.index, None, {"limit": exc.limit}))
    except TarError as exc:
        state.stop(Finding("malformed", f"layer is not a valid tar archive: {exc}", info.index))
    except LayerFormatError as exc:
        state.stop(Finding("malformed", str(exc), info.index))
    except BlobError as exc:
        state.stop(Finding("corrupt", f"layer blob unreadable: {exc}", info.index))
    finally:
        info.uncompressed_size = source.produced
        state.uncompressed += source.produced
        state.compressed += pipe.bytes_read


def _cache_key(desc: Descriptor, diff_id: str | None, limits: AnalysisLimits) -> str:
    return f"{ANALYZER_VERSION}|{desc.digest}|{diff_id}|{limits!r}"


def _replay_layer(state: _State, cached: CachedLayer, info: LayerInfo) -> None:
    """Apply a layer analysed earlier, as if it had been read again."""
    limits = state.limits
    collector = state.collector
    assert collector is not None
    applied_paths: set[str] = set()
    try:
        for entry in cached.entries:
            info.entries += 1
            if state.tree.entries >= limits.max_entries:
                raise LimitExceeded(
                    "max_entries", f"more than {limits.max_entries} entries in the layers"
                )
            applied = state.tree.apply(entry, info.index)
            state.findings.extend(applied.findings)
            if applied.path is not None:
                applied_paths.add(applied.path)
    except LimitExceeded as exc:
        state.stop(Finding("limit", exc.message, info.index, None, {"limit": exc.limit}))
    for fact in cached.facts:
        if fact.path in applied_paths:
            collector.facts[fact.path] = Fact(info.index, fact.kind, fact.value)
    for path, finding in cached.secrets:
        if path in applied_paths:
            collector.secrets.append(
                (
                    path,
                    info.index,
                    Finding(
                        finding.kind, finding.message, info.index, finding.path, finding.detail
                    ),
                )
            )
    info.uncompressed_size = cached.uncompressed_size
    state.uncompressed += cached.uncompressed_size
    info.complete = not state.stopped


async def _read_layer(
    reader: ContentReader, state: _State, desc: Descriptor, info: LayerInfo, diff_id: str | None
) -> None:
    cache, key = state.cache, _cache_key(desc, diff_id, state.limits)
    while cache is not None:
        cached = cache.get(key)
        if cached is not None:
            await asyncio.to_thread(_replay_layer, state, cached, info)
            return
        reading = cache.claim(key)
        if reading is None:
            break  # this analysis reads the layer; the others wait for its cache entry
        await asyncio.shield(reading)  # then look again (a layer too big to cache is read)
    try:
        await _stream_layer(reader, state, desc, info, diff_id)
    finally:
        if cache is not None:
            cache.release(key)


async def _stream_layer(
    reader: ContentReader, state: _State, desc: Descriptor, info: LayerInfo, diff_id: str | None
) -> None:
    loop = asyncio.get_running_loop()
    pipe = BlobPipe(loop)
    stream = reader.open_blob(desc.digest)
    pump = asyncio.create_task(pipe.pump(stream))
    try:
        await run_consumer(_process_layer, state, pipe, desc, info, diff_id)
    finally:
        pipe.close()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def _config_secrets(config: ImageConfig, findings: list[Finding]) -> None:
    sources = [(f"env {e.split('=', 1)[0]}", e) for e in config.env]
    sources += [(f"label {k}", f"{k}={v}") for k, v in config.labels.items()]
    sources += [(f"history step {i}", h) for i, h in enumerate(config.history)]
    for where, text in sources:
        for hit in scan(text.encode("utf-8", "replace")):
            findings.append(
                Finding(
                    "secret",
                    f"{hit.kind} in config {where}",
                    None,
                    None,
                    {"kind": hit.kind, "preview": hit.preview, "fingerprint": hit.fingerprint},
                )
            )


async def analyze_image(
    reader: ContentReader,
    manifest_digest: Digest | str,
    limits: AnalysisLimits | None = None,
    *,
    cache: LayerCache | None = None,
) -> ImageAnalysis:
    """Analyse one image manifest; raises AnalysisError only when nothing can be read.

    With a `cache`, layers analysed before (in any image) are not read again."""
    limits = limits or AnalysisLimits()
    started = time.monotonic()
    reference = str(manifest_digest)
    try:
        fetched = await reader.get_manifest(reference)
        manifest = parse_manifest(fetched.raw, fetched.media_type)
    except (ContentNotFound, ContentCorrupt, ManifestError) as exc:
        raise AnalysisError(f"cannot read manifest {reference}: {exc}") from exc
    if manifest.is_index or manifest.config is None:
        raise AnalysisError(
            f"{reference} is an index, not an image manifest; analyse one of its platforms"
        )
    if manifest.config.size > limits.max_config_bytes:
        raise AnalysisError(f"image config is {manifest.config.size} bytes, over the limit")
    try:
        raw_config = await reader.read_blob(manifest.config.digest, limits.max_config_bytes)
        config = parse_config(raw_config)
    except (ContentNotFound, ContentCorrupt, ConfigError) as exc:
        raise AnalysisError(f"cannot read image config {manifest.config.digest}: {exc}") from exc

    state = _State(limits, started + limits.max_seconds)
    state.collector = ContentCollector(limits)
    state.cache = cache
    layers: list[LayerInfo] = []
    diff_ids = config.diff_ids if len(config.diff_ids) == len(manifest.layers) else ()
    if config.diff_ids and not diff_ids:
        state.findings.append(
            Finding("malformed", "config diff_ids do not match the manifest's layers")
        )
    for index, desc in enumerate(manifest.layers):
        info = LayerInfo(index, str(desc.digest), desc.media_type, desc.size)
        layers.append(info)
        if state.stopped:
            continue
        if index >= limits.max_layers:
            state.stop(
                Finding(
                    "limit",
                    f"more than {limits.max_layers} layers",
                    index,
                    None,
                    {"limit": "max_layers"},
                )
            )
            continue
        if state.compressed + desc.size > limits.max_compressed_bytes:
            state.stop(
                Finding(
                    "limit",
                    f"layers are larger than {limits.max_compressed_bytes} compressed bytes",
                    index,
                    None,
                    {"limit": "max_compressed_bytes"},
                )
            )
            continue
        if not _is_layer(desc.media_type) or desc.urls:
            state.stop(
                Finding("unsupported", f"layer media type {desc.media_type} is not read", index)
            )
            continue
        try:
            await _read_layer(reader, state, desc, info, diff_ids[index] if diff_ids else None)
        except ContentNotFound as exc:
            state.stop(Finding("corrupt", f"layer blob missing: {exc}", index))
    collected = state.collector.finish(state.tree)
    summary = summarise(state.tree, limits.max_listed)
    summary.users = collected.users
    summary.has_passwd = collected.has_passwd
    summary.os = collected.os
    findings = state.findings + collected.findings
    _config_secrets(config, findings)
    return ImageAnalysis(
        manifest_digest=str(manifest.digest),
        config_digest=str(manifest.config.digest),
        config=config,
        layers=layers,
        tree=summary,
        packages=collected.packages,
        findings=findings,
        complete=not state.stopped,
        analyzer_version=ANALYZER_VERSION,
        seconds=round(time.monotonic() - started, 3),
        annotations=dict(manifest.annotations),
    )
