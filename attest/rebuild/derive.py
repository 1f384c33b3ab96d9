"""Recipes read off an image: its SLSA provenance, or its OCI source labels.

BuildKit provenance (v0.2 and v1) names the git context with its commit, the
Containerfile, the build arguments and every base image with its digest, which is a
complete recipe. Other builders' provenance (a GitHub workflow) and the OCI labels
name only the repository and commit; the rest comes from the mirror set or defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

from attest.intoto import Statement
from attest.rebuild.imagenames import ImageNameError, normalise
from attest.rebuild.recipe import GitSource, RecipeError, RecipeSpec
from attest.results import VerificationFailure
from attest.slsa import PROVENANCE_TYPES, parse_provenance
from registry.oci.digest import Digest, DigestError

SOURCE_LABEL: Final = "org.opencontainers.image.source"
REVISION_LABEL: Final = "org.opencontainers.image.revision"
BASE_NAME: Final = "org.opencontainers.image.base.name"
BASE_DIGEST: Final = "org.opencontainers.image.base.digest"
BUILDKIT_METADATA: Final = "https://mobyproject.org/buildkit@v1#metadata"
_COMMIT: Final = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _commit(digest: object) -> str | None:
    for key in ("gitCommit", "sha1", "sha256"):
        value = _str(_dict(digest).get(key))
        if value and _COMMIT.match(value.lower()):
            return value.lower()
    return None


def _git_url(uri: str) -> tuple[str, str | None, str | None]:
    """`https://h/o/r.git#ref:subdir` (BuildKit) or `git+https://h/o/r@ref` (SPDX)
    → (url, ref, subdir)."""
    if "#" in uri:
        url, _, fragment = uri.partition("#")
        ref, _, subdir = fragment.partition(":")
        return url.removeprefix("git+"), ref or None, subdir or None
    body = uri.removeprefix("git+")
    scheme, sep, rest = body.partition("://")
    head, at, ref = rest.rpartition("@")
    if sep and at and "/" in head:
        return f"{scheme}://{head}", ref or None, None
    return body, None, None


def _base_from_purl(uri: str, digest: object) -> tuple[str, Digest] | None:
    """`pkg:docker/alpine@3.20?platform=…` with a sha256 → (normalised name, digest)."""
    if not uri.startswith("pkg:docker/"):
        return None
    value = _str(_dict(digest).get("sha256"))
    if value is None:
        return None
    body = unquote(uri[len("pkg:docker/") :].split("?", 1)[0])
    name, _, version = body.partition("@")
    try:
        image = normalise(f"{name}:{version}" if version and ":" not in version else name)
        return image.tagged, Digest.parse(f"sha256:{value}")
    except (ImageNameError, DigestError):
        return None


def _buildkit_args(args: Mapping[str, Any]) -> tuple[dict[str, str], str | None, str | None]:
    build_args = {
        key[len("build-arg:") :]: str(value)
        for key, value in args.items()
        if key.startswith("build-arg:") and isinstance(value, str | int)
    }
    return build_args, _str(args.get("filename")), _str(args.get("target"))


def _epoch(build_args: Mapping[str, str]) -> int | None:
    value = build_args.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else None


def recipe_from_provenance(statement: Statement) -> RecipeSpec:
    """What a (verified) SLSA provenance statement says about how to rebuild the image.

    Raises RecipeError when the statement is not SLSA provenance or names no git source.
    """
    if statement.predicate_type not in PROVENANCE_TYPES:
        raise RecipeError(f"{statement.predicate_type!r} is not SLSA provenance")
    predicate = statement.predicate
    definition = _dict(predicate.get("buildDefinition"))
    invocation = _dict(predicate.get("invocation"))
    external = _dict(definition.get("externalParameters"))
    config_source = _dict(external.get("configSource") or invocation.get("configSource"))
    request = _dict(external.get("request") or invocation.get("parameters"))
    dependencies = definition.get("resolvedDependencies") or predicate.get("materials") or []
    build_args, filename, target = _buildkit_args(_dict(request.get("args")))

    bases: dict[str, Digest] = {}
    git: tuple[str, str | None, str | None, str | None] | None = None
    for item in dependencies if isinstance(dependencies, list) else []:
        uri = _str(_dict(item).get("uri"))
        if uri is None:
            continue
        base = _base_from_purl(uri, _dict(item).get("digest"))
        if base is not None:
            bases[base[0]] = base[1]
        elif git is None and (uri.startswith("git+") or ".git" in uri):
            url, ref, subdir = _git_url(uri)
            git = (url, ref, subdir, _commit(_dict(item).get("digest")))

    uri = _str(config_source.get("uri"))
    if uri is not None:
        url, ref, subdir = _git_url(uri)
        git = (url, ref, subdir, _commit(config_source.get("digest")) or (git and git[3]))
    if git is None:
        metadata = _dict(
            _dict(predicate.get("metadata")).get(BUILDKIT_METADATA)
            or _dict(_dict(predicate.get("runDetails")).get("metadata")).get(BUILDKIT_METADATA)
        )
        vcs = _dict(metadata.get("vcs"))
        source, revision = _str(vcs.get("source")), _str(vcs.get("revision"))
        if source and revision:
            git = (
                source,
                None,
                None,
                revision.lower() if _COMMIT.match(revision.lower()) else None,
            )
    if git is None:
        try:
            parsed = parse_provenance(statement).source
        except VerificationFailure as exc:
            raise RecipeError(f"the provenance is unusable: {exc}") from exc
        if parsed.repository:
            git = (f"https://{parsed.repository}", parsed.ref, None, parsed.commit)
    if git is None:
        raise RecipeError("the provenance names no git source to rebuild from")
    url, ref, subdir, commit = git
    containerfile = filename or _str(config_source.get("path") or config_source.get("entryPoint"))
    return RecipeSpec(
        origin="provenance",
        source=GitSource(url, ref, commit),
        containerfile=containerfile,
        context=subdir,
        build_args=build_args or None,
        source_date_epoch=_epoch(build_args),
        base_images=bases or None,
        target=target,
    )


def recipe_from_labels(
    config: Mapping[str, Any], annotations: Mapping[str, str] | None = None
) -> RecipeSpec | None:
    """The OCI source labels (config labels or manifest annotations), or None.

    `org.opencontainers.image.base.name`/`base.digest` pin the base image when present.
    """
    labels = {
        **_dict(_dict(config.get("config")).get("Labels")),
        **dict(annotations or {}),
    }
    source = _str(labels.get(SOURCE_LABEL))
    revision = _str(labels.get(REVISION_LABEL))
    bases: dict[str, Digest] = {}
    base_name, base_digest = _str(labels.get(BASE_NAME)), _str(labels.get(BASE_DIGEST))
    if base_name and base_digest:
        try:
            name = normalise(base_name)
            bases[name.tagged] = Digest.parse(base_digest)
        except (ImageNameError, DigestError):
            pass
    if source is None:
        return RecipeSpec(origin="labels", base_images=bases) if bases else None
    url, ref, subdir = _git_url(source)
    commit = revision.lower() if revision and _COMMIT.match(revision.lower()) else None
    return RecipeSpec(
        origin="labels",
        source=GitSource(url, ref or (revision if commit is None else None), commit),
        context=subdir,
        base_images=bases or None,
    )
