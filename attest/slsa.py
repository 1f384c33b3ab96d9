"""SLSA provenance (v0.2 and v1): who built the image, from which source, at which level.

A provenance's level is not something it can claim for itself: the trust policy lists
the builders it trusts and the SLSA build level each one is known to reach. A verified
provenance from a listed builder gets that builder's level; anything else is rejected.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Final

from attest.intoto import Statement
from attest.results import Reason, VerificationFailure

PROVENANCE_V02: Final = "https://slsa.dev/provenance/v0.2"
PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
PROVENANCE_TYPES: Final = frozenset({PROVENANCE_V02, PROVENANCE_V1})


@dataclass(frozen=True)
class Source:
    """Where the build's source came from, normalised (`github.com/org/repo`)."""

    repository: str | None
    ref: str | None
    commit: str | None


@dataclass(frozen=True)
class Provenance:
    builder_id: str
    build_type: str | None
    source: Source


def normalise_repository(uri: str) -> str:
    """`git+https://github.com/o/r.git@refs/x` → `github.com/o/r` (scheme, ref, .git dropped)."""
    value = uri.strip()
    if value.startswith("git+"):
        value = value[4:]
    for scheme in ("https://", "http://", "ssh://", "git://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
            break
    head, at, _ = value.rpartition("@")
    if at and "/" in head:
        value = head
    value = value.rstrip("/")
    if value.endswith(".git"):
        value = value[:-4]
    return value.lower()


def _split_git_uri(uri: str) -> tuple[str, str | None]:
    """Repository and ref of an SPDX-style `git+https://host/repo@ref` URI."""
    body = uri[4:] if uri.startswith("git+") else uri
    scheme, sep, rest = body.partition("://")
    if not sep:
        rest, scheme = body, ""
    repo, at, ref = rest.partition("@")
    return normalise_repository(f"{scheme}://{repo}" if scheme else repo), (ref if at else None)


def _str(obj: object, *path: str) -> str | None:
    current: Any = obj
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current if isinstance(current, str) else None


def _commit_of(digest: object) -> str | None:
    if not isinstance(digest, dict):
        return None
    for key in ("gitCommit", "sha1", "sha256"):
        value = digest.get(key)
        if isinstance(value, str):
            return value.lower()
    return None


def _source_v02(predicate: dict[str, Any]) -> Source:
    invocation = predicate.get("invocation")
    config = invocation.get("configSource") if isinstance(invocation, dict) else None
    if isinstance(config, dict) and isinstance(config.get("uri"), str):
        repo, ref = _split_git_uri(config["uri"])
        return Source(repo, ref, _commit_of(config.get("digest")))
    return _first_git_material(predicate.get("materials"))


def _first_git_material(items: object) -> Source:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("uri"), str):
                uri = item["uri"]
                if uri.startswith("git+") or "github.com" in uri or "gitlab" in uri:
                    repo, ref = _split_git_uri(uri)
                    return Source(repo, ref, _commit_of(item.get("digest")))
    return Source(None, None, None)


def _source_v1(predicate: dict[str, Any]) -> Source:
    definition = predicate.get("buildDefinition")
    if not isinstance(definition, dict):
        return Source(None, None, None)
    dependency = _first_git_material(definition.get("resolvedDependencies"))
    workflow = definition.get("externalParameters", {})
    workflow = workflow.get("workflow") if isinstance(workflow, dict) else None
    repo = _str(workflow, "repository")
    ref = _str(workflow, "ref")
    return Source(
        normalise_repository(repo) if repo else dependency.repository,
        ref or dependency.ref,
        dependency.commit,
    )


def parse_provenance(statement: Statement) -> Provenance:
    """Builder and source of a SLSA provenance statement."""
    predicate = statement.predicate
    if statement.predicate_type == PROVENANCE_V02:
        builder = _str(predicate, "builder", "id")
        build_type = _str(predicate, "buildType")
        source = _source_v02(predicate)
    elif statement.predicate_type == PROVENANCE_V1:
        builder = _str(predicate, "runDetails", "builder", "id")
        build_type = _str(predicate, "buildDefinition", "buildType")
        source = _source_v1(predicate)
    else:
        raise VerificationFailure(
            Reason.PREDICATE_TYPE_MISMATCH,
            f"{statement.predicate_type!r} is not SLSA provenance v0.2 or v1",
        )
    if not builder:
        raise VerificationFailure(Reason.PAYLOAD_INVALID, "provenance names no builder id")
    return Provenance(builder, build_type, source)


@dataclass(frozen=True)
class TrustedBuilder:
    """A builder id (exact, or a prefix ending in `*`) and the SLSA level it reaches."""

    id: str
    level: int = 1

    def matches(self, builder_id: str) -> bool:
        if self.id.endswith("*"):
            return builder_id.startswith(self.id[:-1])
        return builder_id == self.id


@dataclass(frozen=True)
class SourceExpectation:
    """What the source must be; `ref` is a glob (`refs/tags/v*`), commit an exact hex."""

    repository: str | None = None
    ref: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class SlsaPolicy:
    min_level: int = 1
    builders: tuple[TrustedBuilder, ...] = ()
    source: SourceExpectation | None = None


def evaluate(provenance: Provenance, policy: SlsaPolicy) -> int:
    """The SLSA level this provenance earns under `policy`, or the reason it earns none."""
    builder = next((b for b in policy.builders if b.matches(provenance.builder_id)), None)
    if builder is None:
        raise VerificationFailure(
            Reason.BUILDER_NOT_ALLOWED, f"builder {provenance.builder_id!r} is not trusted"
        )
    expected, actual = policy.source, provenance.source
    if expected is not None:
        if expected.repository is not None and actual.repository != normalise_repository(
            expected.repository
        ):
            raise VerificationFailure(
                Reason.SOURCE_MISMATCH,
                f"source repository {actual.repository!r} is not {expected.repository!r}",
            )
        if expected.ref is not None and (
            actual.ref is None or not fnmatch.fnmatchcase(actual.ref, expected.ref)
        ):
            raise VerificationFailure(
                Reason.SOURCE_MISMATCH, f"source ref {actual.ref!r} does not match {expected.ref!r}"
            )
        if expected.commit is not None and actual.commit != expected.commit.lower():
            raise VerificationFailure(
                Reason.SOURCE_MISMATCH,
                f"source commit {actual.commit!r} is not {expected.commit!r}",
            )
    if builder.level < policy.min_level:
        raise VerificationFailure(
            Reason.SLSA_LEVEL_TOO_LOW,
            f"builder {provenance.builder_id!r} reaches SLSA level {builder.level}, "
            f"policy requires {policy.min_level}",
        )
    return builder.level
