"""Rebuild one image from its source and compare the result with the upstream image.

    upstream image ─▶ recipe (explicit > provenance > labels > the image itself)
                   ─▶ source at the exact commit ─▶ base images exported from Zoll
                   ─▶ builder (sandboxed, no network, time-limited) ─▶ OCI layout
                   ─▶ compare with upstream ─▶ RebuildResult

`rebuild` never raises for a failed rebuild: every expected failure is a result with a
`FailureReason`. All intermediate state lives in one private scratch directory that is
removed at the end; the rebuilt image appears at `output` only when it is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from attest.intoto import Statement
from attest.rebuild.bases import BaseImageMissing, BaseResolver, export_image
from attest.rebuild.buildah import BuildahBackend
from attest.rebuild.builder import BaseLayout, BuilderBackend, BuildError, BuildRequest
from attest.rebuild.compare import CompareError, compare_images
from attest.rebuild.containerfile import external_images, pin
from attest.rebuild.derive import recipe_from_labels, recipe_from_provenance
from attest.rebuild.diff import DiffLimits, ImageDiff
from attest.rebuild.process import LogTail, ProcessLimits
from attest.rebuild.recipe import (
    GitSource,
    Recipe,
    RecipeError,
    RecipeSpec,
    combine,
    upstream_spec,
)
from attest.rebuild.result import FailureReason, RebuildResult
from attest.rebuild.scratch import scratch_dir
from attest.rebuild.source import Checkout, SourceError, fetch_source
from attest.statements import RebuildOutcome
from registry.oci.digest import Digest
from registry.oci.manifest import Manifest, ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader, OCILayoutReader

MAX_CONTAINERFILE: Final = 1 << 20
DEFAULT_PLATFORM: Final = "linux/amd64"


class Reporter(Protocol):
    """Progress for people: stage changes and the builder's output, line by line."""

    def stage(self, name: str, message: str) -> None: ...

    def log(self, line: str) -> None: ...


class _Silent:
    def stage(self, name: str, message: str) -> None:
        pass

    def log(self, line: str) -> None:
        pass


@dataclass(frozen=True)
class RebuildLimits:
    """Time and resources one rebuild may take."""

    build_timeout: float = 3600.0
    """Wall clock for the builder (base import, build, export); a recipe may lower it."""
    source_timeout: float = 900.0
    """Wall clock for fetching the source."""
    memory_bytes: int | None = 16 << 30
    """Address space per builder process (RLIMIT_AS)."""
    cpu_seconds: int | None = None
    max_file_bytes: int | None = 64 << 30
    diff: DiffLimits = field(default_factory=DiffLimits)
    log_excerpt_lines: int = 60

    def process(self, timeout: float | None) -> ProcessLimits:
        return ProcessLimits(
            timeout=min(self.build_timeout, timeout) if timeout else self.build_timeout,
            memory_bytes=self.memory_bytes,
            cpu_seconds=self.cpu_seconds,
            max_file_bytes=self.max_file_bytes,
        )


class _Failed(Exception):
    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _State:
    """What is known so far, so a failure at any stage still reports all of it."""

    started: datetime
    upstream: Digest | None = None
    upstream_index: Digest | None = None
    recipe: Recipe | None = None
    checkout: Checkout | None = None
    builder_version: str | None = None
    rebuilt: Digest | None = None
    diff: ImageDiff | None = None
    layout: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[stage] = time.monotonic() - start


async def _platform_image(
    reader: ContentReader, reference: str, platform: str
) -> tuple[Manifest, Digest | None]:
    fetched = await reader.get_manifest(reference)
    manifest = parse_manifest(fetched.raw, fetched.media_type)
    if not manifest.is_index:
        return manifest, None
    os_name, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    for desc in manifest.manifests:
        plat = desc.platform or {}
        if (
            plat.get("os") == os_name
            and plat.get("architecture") == arch
            and (not variant or plat.get("variant") == variant)
        ):
            child = await reader.get_manifest(str(desc.digest))
            return parse_manifest(child.raw, child.media_type), manifest.digest
    raise ManifestError(f"the index {manifest.digest} has no {platform} image")


async def _upstream(
    reader: ContentReader, reference: str, platform: str, state: _State
) -> tuple[Manifest, dict[str, Any]]:
    try:
        manifest, index = await _platform_image(reader, reference, platform)
        if manifest.config is None:
            raise ManifestError(f"{manifest.digest} is not an image manifest")
        config = json.loads(await reader.read_blob(manifest.config.digest, 4 << 20))
    except (ContentNotFound, ContentCorrupt, ManifestError, ValueError) as exc:
        raise _Failed(FailureReason.UPSTREAM_UNREADABLE, f"{reference}: {exc}") from exc
    if not isinstance(config, dict):
        raise _Failed(FailureReason.UPSTREAM_UNREADABLE, "the image config is not an object")
    state.upstream, state.upstream_index = manifest.digest, index
    return manifest, config


def _recipe(
    explicit: RecipeSpec | None,
    provenance: Sequence[Statement],
    manifest: Manifest,
    config: dict[str, Any],
    reporter: Reporter,
) -> Recipe:
    specs: list[RecipeSpec] = []
    if explicit is not None:
        specs.append(explicit)
    for statement in provenance:
        try:
            specs.append(recipe_from_provenance(statement))
        except RecipeError as exc:
            reporter.stage("recipe", f"provenance not used: {exc}")
    labels = recipe_from_labels(config, manifest.annotations)
    if labels is not None:
        specs.append(labels)
    specs.append(upstream_spec(manifest, config))
    try:
        return combine(specs)
    except RecipeError as exc:
        raise _Failed(FailureReason.RECIPE_INVALID, str(exc)) from exc


_NETWORK_GIT: Final = re.compile(r"^(git\+)?(https?|ssh|git)://|^[\w.-]+@[\w.-]+:")


def _check_source_origin(recipe: Recipe, local_derived_sources: bool) -> None:
    """A source named by the image itself (provenance, labels) must be a network URL:
    otherwise an upstream could make Zoll build, and publish, a repository or directory
    that happens to exist on the Zoll node."""
    origin = recipe.origins.get("source", "explicit")
    if origin == "explicit" or local_derived_sources:
        return
    source = recipe.source
    if isinstance(source, GitSource) and _NETWORK_GIT.match(source.url):
        return
    where = source.url if isinstance(source, GitSource) else str(source.path)
    raise _Failed(
        FailureReason.RECIPE_INVALID,
        f"the image's {origin} names a local source ({where}); only an explicit recipe "
        "may build from this node's own files",
    )


def _inside(root: Path, relative: str, what: str, where: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise _Failed(FailureReason.RECIPE_INVALID, f"{what} {relative!r} leaves the source")
    if not path.exists():
        raise _Failed(
            FailureReason.RECIPE_INVALID, f"{what} {relative!r} does not exist in {where}"
        )
    return path


def _build_inputs(recipe: Recipe, checkout: Checkout) -> tuple[Recipe, Path, Path, str]:
    where = checkout.uri + (f" at {checkout.commit}" if checkout.commit else "")
    context = _inside(checkout.root, recipe.context, "context", where)
    if not context.is_dir():
        raise _Failed(
            FailureReason.RECIPE_INVALID, f"context {recipe.context!r} is not a directory"
        )
    if recipe.containerfile is None:
        found = next((n for n in ("Containerfile", "Dockerfile") if (context / n).is_file()), None)
        if found is None:
            raise _Failed(
                FailureReason.RECIPE_INVALID,
                f"no Containerfile or Dockerfile in context {recipe.context!r} of {where}",
            )
        recipe = recipe.with_containerfile(found)
    assert recipe.containerfile is not None
    relative = os.path.normpath(os.path.join(recipe.context, recipe.containerfile))  # noqa: PTH118
    containerfile = _inside(checkout.root, relative, "containerfile", where)
    if not containerfile.is_file() or containerfile.stat().st_size > MAX_CONTAINERFILE:
        raise _Failed(
            FailureReason.RECIPE_INVALID, f"containerfile {relative!r} is not a readable file"
        )
    try:
        text = containerfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Failed(FailureReason.RECIPE_INVALID, f"cannot read {relative}: {exc}") from exc
    return recipe, context, containerfile, text


async def _export_bases(
    recipe: Recipe, text: str, resolver: BaseResolver, scratch: Path
) -> list[BaseLayout]:
    try:
        pins = pin(external_images(text, recipe.build_args), recipe.base_images)
    except RecipeError as exc:
        raise _Failed(FailureReason.RECIPE_INVALID, str(exc)) from exc
    layouts: list[BaseLayout] = []
    for i, pinned in enumerate(pins):
        reader = await resolver.find(pinned.name.repository, pinned.digest)
        if reader is None:
            raise _Failed(
                FailureReason.BASE_IMAGE_MISSING,
                f"base image {pinned.name.repository}@{pinned.digest} "
                f"(FROM {pinned.written}) is not in Zoll",
            )
        layout = scratch / "bases" / str(i)
        try:
            await export_image(reader, pinned.digest, layout, tag="base", platform=recipe.platform)
        except BaseImageMissing as exc:
            raise _Failed(
                FailureReason.BASE_IMAGE_MISSING, f"base image {pinned.written}: {exc}"
            ) from exc
        layouts.append(
            BaseLayout(pinned.written, pinned.name.tagged, pinned.digest, layout, "base")
        )
    return layouts


def _publish(built: Path, output: Path) -> None:
    """Move the finished layout to `output` atomically (rename, or copy then rename)."""
    try:
        os.rename(built, output)  # noqa: PTH104
        return
    except OSError:
        pass
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(built, partial)
        os.rename(partial, output)  # noqa: PTH104
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@dataclass(frozen=True)
class _Job:
    """One rebuild's inputs, as `rebuild` received them."""

    upstream: ContentReader
    reference: str
    bases: BaseResolver
    recipe: RecipeSpec | None
    provenance: Sequence[Statement]
    backend: BuilderBackend
    limits: RebuildLimits
    output: Path | None
    scratch: Path | None
    platform: str | None
    reporter: Reporter
    local_derived_sources: bool


def _reason(code: str) -> FailureReason:
    try:
        return FailureReason(code)
    except ValueError:
        return FailureReason.BUILD_FAILED


async def _steps(job: _Job, state: _State, tail: LogTail) -> str | None:
    """Every step of a rebuild; raises _Failed, returns a note when the comparison failed."""
    reporter = job.reporter
    with state.timed("resolve"):
        reporter.stage("resolve", f"reading {job.reference}")
        platform = job.platform or (job.recipe and job.recipe.platform) or DEFAULT_PLATFORM
        manifest, config = await _upstream(job.upstream, job.reference, platform, state)
        recipe = _recipe(job.recipe, job.provenance, manifest, config, reporter)
        state.recipe = recipe
        _check_source_origin(recipe, job.local_derived_sources)
    try:
        state.builder_version = await job.backend.version()
    except BuildError as exc:
        raise _Failed(_reason(exc.reason), str(exc)) from exc
    note: str | None = None
    async with scratch_dir(job.scratch) as work:
        with state.timed("source"):
            reporter.stage("source", f"fetching {recipe.source.uri()}")
            try:
                state.checkout = await fetch_source(
                    recipe.source, work, time_limit=job.limits.source_timeout
                )
            except SourceError as exc:
                why = FailureReason.TIMEOUT if exc.timed_out else FailureReason.SOURCE_UNAVAILABLE
                raise _Failed(why, str(exc)) from exc
            recipe, context, containerfile, text = await asyncio.to_thread(
                _build_inputs, recipe, state.checkout
            )
            state.recipe = recipe
        with state.timed("bases"):
            reporter.stage("bases", "exporting base images from Zoll")
            layouts = await _export_bases(recipe, text, job.bases, work)
        with state.timed("build"):
            reporter.stage(
                "build",
                f"{job.backend.name} {state.builder_version}: {recipe.containerfile} "
                f"at SOURCE_DATE_EPOCH={recipe.source_date_epoch}",
            )
            request = BuildRequest(
                context=context,
                containerfile=containerfile,
                output=work / "out",
                scratch=work / "builder",
                timestamp=recipe.source_date_epoch,
                build_args=recipe.build_args,
                bases=layouts,
                layers=recipe.layers,
                target=recipe.target,
                platform=recipe.platform,
                network=recipe.network,
                format=recipe.format,
                compression=recipe.compression,
                limits=job.limits.process(recipe.timeout),
            )
            try:
                built = await job.backend.build(request, tail, reporter.log)
            except BuildError as exc:
                raise _Failed(_reason(exc.reason), str(exc)) from exc
            state.rebuilt = built.digest
        with state.timed("compare"):
            assert state.upstream is not None
            reporter.stage("compare", f"comparing {built.digest} with {state.upstream}")
            try:
                state.diff = await compare_images(
                    job.upstream,
                    state.upstream,
                    OCILayoutReader(built.layout),
                    built.digest,
                    job.limits.diff,
                    lambda text: reporter.stage("compare", text),
                )
            except CompareError as exc:
                note = f"the comparison failed: {exc}"
        if job.output is not None:
            await asyncio.to_thread(_publish, built.layout, job.output)
            state.layout = job.output
    return note


async def rebuild(
    upstream: ContentReader,
    reference: str,
    *,
    bases: BaseResolver,
    recipe: RecipeSpec | None = None,
    provenance: Sequence[Statement] = (),
    backend: BuilderBackend | None = None,
    limits: RebuildLimits | None = None,
    output: Path | None = None,
    scratch: Path | None = None,
    platform: str | None = None,
    reporter: Reporter | None = None,
    local_derived_sources: bool = False,
) -> RebuildResult:
    """Rebuild `reference` (tag or digest in `upstream`) and compare; never raises for a
    failed rebuild.

    `recipe` is the explicit recipe (mirror set), `provenance` verified SLSA provenance
    statements about the image. The rebuilt image is kept as an OCI layout at `output`
    (which must not exist) when given, and appears there only complete. `scratch` is
    where the private working directory is made (default: the system's temp dir).
    A source derived from the image (provenance, labels) must be a network git URL
    unless `local_derived_sources` (tests, a node whose local repositories are public).
    """
    job = _Job(
        upstream,
        reference,
        bases,
        recipe,
        provenance,
        backend or BuildahBackend(),
        limits or RebuildLimits(),
        output,
        scratch,
        platform,
        reporter or _Silent(),
        local_derived_sources,
    )
    if output is not None and await asyncio.to_thread(output.exists):
        raise FileExistsError(f"{output} already exists")
    state = _State(started=datetime.now(UTC))
    tail = LogTail(max(job.limits.log_excerpt_lines, 1) * 4)
    reason: FailureReason | None = None
    try:
        message = await _steps(job, state, tail)
    except _Failed as exc:
        reason, message = exc.reason, str(exc)
    outcome: RebuildOutcome = "failed"
    if reason is None and state.rebuilt is not None:
        outcome = "reproduced" if state.rebuilt == state.upstream else "differs"
    job.reporter.stage("done", outcome)
    checkout = state.checkout
    return RebuildResult(
        outcome=outcome,
        upstream=state.upstream,
        started=state.started,
        finished=datetime.now(UTC),
        builder=job.backend.name,
        build_type=job.backend.build_type,
        builder_version=state.builder_version,
        recipe=state.recipe,
        source_uri=checkout.uri
        if checkout
        else (state.recipe.source.uri() if state.recipe else None),
        source_digest=checkout.digest if checkout else {},
        rebuilt=state.rebuilt,
        diff=state.diff,
        reason=reason,
        message=message,
        log_excerpt=tail.text(job.limits.log_excerpt_lines),
        layout=state.layout,
        upstream_index=state.upstream_index,
        timings=state.timings,
    )
