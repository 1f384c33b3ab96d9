"""The interface every builder backend implements (buildah today; BuildKit, kaniko later).

A backend gets everything resolved: a source tree, a Containerfile, build arguments, a
timestamp, base images as local OCI layouts, and a private scratch directory it owns.
It writes the image into `output` (an OCI layout) or raises `BuildError`; it never
touches shared state (no host image store, no network unless the request allows it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from attest.rebuild.process import LogTail, ProcessLimits
from attest.rebuild.recipe import Compression, Format
from registry.oci.digest import Digest


@dataclass(frozen=True)
class BaseLayout:
    """A base image exported from Zoll: as the Containerfile names it, and where it is."""

    written: str
    """The reference as written in FROM (`alpine:3.20`, `x@sha256:…`)."""
    tagged: str
    """Normalised `registry/repository:tag`."""
    digest: Digest
    layout: Path
    tag: str
    """The tag of the image inside `layout`."""

    @property
    def local_name(self) -> str:
        """The name a registry pull of the FROM reference gives the image locally:
        `repo@digest` when pulled by digest, `repo:tag` otherwise. Builders record it in
        the image (buildah: base.name annotation, history), so it must match."""
        if "@" in self.written:
            return f"{self.tagged.rsplit(':', 1)[0]}@{self.digest}"
        return self.tagged


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    containerfile: Path
    output: Path
    """OCI layout directory to create; must not exist yet."""
    scratch: Path
    """Private directory for the builder's storage and temporary files."""
    timestamp: int
    build_args: Mapping[str, str] = field(default_factory=dict)
    bases: Sequence[BaseLayout] = ()
    layers: bool = True
    target: str | None = None
    platform: str | None = None
    network: bool = False
    format: Format = "oci"
    compression: Compression = "gzip"
    limits: ProcessLimits = field(default_factory=ProcessLimits)


@dataclass(frozen=True)
class BuildOutput:
    digest: Digest
    """The manifest digest of the built image in `layout`."""
    layout: Path
    tag: str


class BuildError(Exception):
    """The build did not produce an image; `reason` is a `FailureReason` value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BuilderBackend(Protocol):
    """One way of building images from a Containerfile."""

    @property
    def name(self) -> str: ...

    @property
    def build_type(self) -> str:
        """URI for the attestation's `buildType`: how the rebuild was run."""
        ...

    async def version(self) -> str:
        """The builder's version string, recorded in the attestation."""
        ...

    async def build(
        self, request: BuildRequest, tail: LogTail, on_line: Callable[[str], None] | None
    ) -> BuildOutput:
        """Build; raises BuildError (`build-failed`, `timeout`, `base-image-missing`,
        `builder-unavailable`)."""
        ...
