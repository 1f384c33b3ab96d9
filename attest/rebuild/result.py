"""The outcome of one rebuild, and the in-toto statement that attests it.

`reproduced` rests on one fact only: the rebuilt manifest digest equals the upstream's.
Everything else (the diff, the log excerpt, the timings) explains; it never decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from attest.rebuild.diff import ImageDiff
from attest.rebuild.recipe import Recipe
from attest.statements import RebuildOutcome, ResourceRef, Verifier, rebuild_result
from registry.oci.digest import Digest


class FailureReason(StrEnum):
    RECIPE_INVALID = "recipe-invalid"
    """No usable recipe: no source, an unpinned base, a missing context or Containerfile."""
    SOURCE_UNAVAILABLE = "source-unavailable"
    """The repository cannot be cloned or lacks the commit."""
    BASE_IMAGE_MISSING = "base-image-missing"
    """A base image named by digest is not in Zoll."""
    BUILD_FAILED = "build-failed"
    """The builder ran and failed (see the log excerpt)."""
    TIMEOUT = "timeout"
    """The build (or the source fetch) exceeded its time limit and was killed."""
    BUILDER_UNAVAILABLE = "builder-unavailable"
    """The builder or its sandbox cannot run on this node."""
    UPSTREAM_UNREADABLE = "upstream-unreadable"
    """The image to rebuild is not in the reader, or is not an image."""


@dataclass(frozen=True)
class RebuildResult:
    """What happened; `to_json()` for the API and the job record, `statement()` to sign."""

    outcome: RebuildOutcome
    upstream: Digest | None
    """The image manifest that was rebuilt (the platform image when given an index)."""
    started: datetime
    finished: datetime
    builder: str
    build_type: str
    builder_version: str | None = None
    recipe: Recipe | None = None
    source_uri: str | None = None
    source_digest: Mapping[str, str] = field(default_factory=dict)
    rebuilt: Digest | None = None
    diff: ImageDiff | None = None
    reason: FailureReason | None = None
    message: str | None = None
    log_excerpt: str = ""
    layout: Path | None = None
    """The rebuilt image as an OCI layout (tag `rebuilt`), when an output was asked for."""
    upstream_index: Digest | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def reproduced(self) -> bool:
        return self.outcome == "reproduced"

    @property
    def error(self) -> str | None:
        if self.reason is None:
            return self.message
        return f"{self.reason.value}: {self.message}" if self.message else self.reason.value

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "upstream": None if self.upstream is None else str(self.upstream),
            "upstream_index": None if self.upstream_index is None else str(self.upstream_index),
            "rebuilt": None if self.rebuilt is None else str(self.rebuilt),
            "reason": None if self.reason is None else self.reason.value,
            "message": self.message,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "builder": {
                "name": self.builder,
                "version": self.builder_version,
                "build_type": self.build_type,
            },
            "recipe": None if self.recipe is None else self.recipe.to_json(),
            "source": {"uri": self.source_uri, "digest": dict(self.source_digest)},
            "diff": None if self.diff is None else self.diff.to_json(),
            "log_excerpt": self.log_excerpt,
            "layout": None if self.layout is None else str(self.layout),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def statement(self, *, image: str, rebuilder: Verifier, max_lines: int = 20) -> dict[str, Any]:
        """Zoll's rebuild predicate about `image@upstream`, ready to sign.

        `rebuilder` is the node (id and Zoll's version); the builder's name and version
        are added to it. Raises StatementError for a result without an upstream digest
        (the image could not even be read: there is nothing to attest about).
        """
        from attest.signing import StatementError

        if self.upstream is None:
            raise StatementError("a rebuild of an unreadable image cannot be attested")
        versions = dict(rebuilder.version)
        if self.builder_version:
            versions[self.builder] = self.builder_version
        recipe = self.recipe.to_json() if self.recipe is not None else None
        return rebuild_result(
            image=image,
            digest=self.upstream,
            rebuilder=Verifier(rebuilder.id, versions),
            started=self.started,
            finished=self.finished,
            source=ResourceRef(self.source_uri or "unknown:", dict(self.source_digest)),
            build_type=self.build_type,
            rebuilt_digest=self.rebuilt if self.outcome != "failed" else None,
            layers=self.diff.layer_comparisons(max_lines) if self.diff is not None else (),
            external_parameters={"recipe": recipe} if recipe is not None else None,
            error=self.error if self.outcome != "reproduced" and self.error else None,
            config=self.diff.config.comparison(max_lines)
            if self.diff is not None and self.diff.config is not None
            else None,
        )
