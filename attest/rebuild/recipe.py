"""Rebuild recipes: what to build, from which source, with which inputs.

A recipe is assembled from up to three origins, strongest first: an explicit recipe
(the mirror set or `--recipe`), the image's SLSA provenance, and its OCI labels
(`org.opencontainers.image.source` + `revision`). Each origin yields a `RecipeSpec` with
what it knows; `combine` takes every field from the strongest origin that has it and
fills the rest from the upstream image itself (time, platform, manifest format,
compression), which is what makes a bit-for-bit rebuild possible at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import yaml

from attest.rebuild.imagenames import ImageNameError, normalise
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest, DigestError
from registry.oci.manifest import Manifest

Format = Literal["oci", "docker"]
Compression = Literal["gzip", "zstd", "none"]
MAX_RECIPE_BYTES: Final = 256 * 1024
_COMMIT: Final = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_PLATFORM: Final = re.compile(r"^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_.]+)?$")
_ARG_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RecipeError(ValueError):
    """The recipe cannot describe a build (missing source, unpinned base, bad field)."""


@dataclass(frozen=True)
class GitSource:
    """A git repository; `ref` is a branch, tag or commit, `commit` an exact pin."""

    url: str
    ref: str | None = None
    commit: str | None = None

    def uri(self) -> str:
        base = self.url if self.url.startswith("git+") else f"git+{self.url}"
        return f"{base}@{self.ref}" if self.ref else base

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"git": self.url}
        if self.ref:
            out["ref"] = self.ref
        if self.commit:
            out["commit"] = self.commit
        return out


@dataclass(frozen=True)
class PathSource:
    """A local directory, used as it is (a checkout made elsewhere, a test fixture)."""

    path: Path

    def uri(self) -> str:
        return self.path.resolve().as_uri()

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path)}


Source = GitSource | PathSource


@dataclass(frozen=True)
class RecipeSpec:
    """What one origin says about the build; None means "this origin does not know"."""

    origin: str
    source: Source | None = None
    containerfile: str | None = None
    context: str | None = None
    build_args: Mapping[str, str] | None = None
    source_date_epoch: int | None = None
    base_images: Mapping[str, Digest] | None = None
    layers: bool | None = None
    target: str | None = None
    platform: str | None = None
    network: bool | None = None
    format: Format | None = None
    compression: Compression | None = None
    timeout: float | None = None

    @classmethod
    def from_mapping(
        cls, data: object, *, origin: str = "explicit", base_dir: Path | None = None
    ) -> RecipeSpec:
        """Parse a recipe mapping (a mirror-set entry's `rebuild:`, a recipe file)."""
        if not isinstance(data, dict):
            raise RecipeError("a recipe must be a mapping")
        known = {f.name for f in fields(cls)} - {"origin"}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise RecipeError(f"unknown recipe fields: {', '.join(unknown)}")
        build_args = _build_args(data.get("build_args"))
        epoch = _epoch(data.get("source_date_epoch"))
        if epoch is None and build_args and "SOURCE_DATE_EPOCH" in build_args:
            epoch = _epoch(build_args["SOURCE_DATE_EPOCH"])
        return cls(
            origin=origin,
            source=_source(data.get("source"), base_dir),
            containerfile=_relative(data.get("containerfile"), "containerfile"),
            context=_relative(data.get("context"), "context"),
            build_args=build_args,
            source_date_epoch=epoch,
            base_images=_base_images(data.get("base_images")),
            layers=_bool(data.get("layers"), "layers"),
            target=_optional_str(data.get("target"), "target"),
            platform=_platform(data.get("platform")),
            network=_bool(data.get("network"), "network"),
            format=_choice(data.get("format"), "format", ("oci", "docker")),  # type: ignore[arg-type]
            compression=_choice(data.get("compression"), "compression", ("gzip", "zstd", "none")),  # type: ignore[arg-type]
            timeout=_timeout(data.get("timeout")),
        )


def load_recipe(path: Path) -> RecipeSpec:
    """A recipe file (YAML); relative `source.path` values are relative to the file."""
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path} is larger than {MAX_RECIPE_BYTES} bytes")
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path} is not valid YAML: {exc}") from exc
    return RecipeSpec.from_mapping(data, origin="explicit", base_dir=path.parent)


def _optional_str(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{what} must be a non-empty string")
    return value


def _bool(value: object, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise RecipeError(f"{what} must be true or false")


def _choice(value: object, what: str, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise RecipeError(f"{what} must be one of {', '.join(choices)}")
    return str(value)


def _relative(value: object, what: str) -> str | None:
    text = _optional_str(value, what)
    if text is None:
        return None
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts:
        raise RecipeError(f"{what} {text!r} must be a relative path inside the source")
    return str(path)


def _epoch(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RecipeError("source_date_epoch must be seconds since 1970")
    try:
        seconds = int(value)
    except ValueError:
        raise RecipeError("source_date_epoch must be seconds since 1970") from None
    if seconds < 0:
        raise RecipeError("source_date_epoch must not be negative")
    return seconds


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise RecipeError("timeout must be a positive number of seconds")
    return float(value)


def _platform(value: object) -> str | None:
    text = _optional_str(value, "platform")
    if text is not None and not _PLATFORM.match(text):
        raise RecipeError(f"platform {text!r} is not os/arch[/variant]")
    return text


def _build_args(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecipeError("build_args must be a mapping of NAME: value")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _ARG_NAME.match(key):
            raise RecipeError(f"build argument name {key!r} is not valid")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise RecipeError(f"build argument {key} must be a string")
        out[key] = str(item)
    return out


def _base_images(value: object) -> dict[str, Digest] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecipeError("base_images must map image names to digests")
    out: dict[str, Digest] = {}
    for key, item in value.items():
        try:
            name = normalise(str(key))
            digest = Digest.parse(str(item))
        except (ImageNameError, DigestError) as exc:
            raise RecipeError(f"base_images {key!r}: {exc}") from exc
        out[name.tagged if name.tag else name.repository] = digest
    return out


def _source(value: object, base_dir: Path | None) -> Source | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecipeError("source must be a mapping with git: URL or path: DIR")
    unknown = sorted(str(k) for k in value if k not in ("git", "path", "ref", "commit"))
    if unknown:
        raise RecipeError(f"unknown source fields: {', '.join(unknown)}")
    if ("git" in value) == ("path" in value):
        raise RecipeError("source needs exactly one of git: URL or path: DIR")
    if "path" in value:
        raw = _optional_str(value["path"], "source.path")
        assert raw is not None
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return PathSource(path)
    url = _optional_str(value["git"], "source.git")
    assert url is not None
    if url.startswith("-") or url.startswith("ext::"):
        raise RecipeError(f"source.git {url!r} is not a repository URL")
    commit = _optional_str(value.get("commit"), "source.commit")
    if commit is not None and not _COMMIT.match(commit.lower()):
        raise RecipeError("source.commit must be a full hexadecimal commit id")
    return GitSource(url, _optional_str(value.get("ref"), "source.ref"), commit and commit.lower())


@dataclass(frozen=True)
class Recipe:
    """A complete build description; `origins` says where its fields came from."""

    source: Source
    containerfile: str | None
    """None until the source is fetched: then `Containerfile`, else `Dockerfile`."""
    context: str
    build_args: Mapping[str, str]
    source_date_epoch: int
    base_images: Mapping[str, Digest]
    layers: bool
    target: str | None
    platform: str
    network: bool
    format: Format
    compression: Compression
    timeout: float | None = None
    origins: Mapping[str, str] = field(default_factory=dict)
    """Field name → origin (`explicit`, `provenance`, `labels`, `upstream`, `default`)."""

    def with_containerfile(self, name: str) -> Recipe:
        return replace(
            self, containerfile=name, origins={**self.origins, "containerfile": "default"}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.to_json(),
            "containerfile": self.containerfile,
            "context": self.context,
            "build_args": dict(self.build_args),
            "source_date_epoch": self.source_date_epoch,
            "base_images": {k: str(v) for k, v in sorted(self.base_images.items())},
            "layers": self.layers,
            "target": self.target,
            "platform": self.platform,
            "network": self.network,
            "format": self.format,
            "compression": self.compression,
            "origins": dict(self.origins),
        }


def upstream_spec(manifest: Manifest, config: Mapping[str, Any]) -> RecipeSpec:
    """What the upstream image itself says: its time, platform, format, compression."""
    epoch: int | None = None
    created = config.get("created")
    if isinstance(created, str):
        try:
            epoch = max(int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()), 0)
        except ValueError:
            epoch = None
    platform: str | None = None
    os_name, arch = config.get("os"), config.get("architecture")
    if isinstance(os_name, str) and isinstance(arch, str):
        platform = f"{os_name}/{arch}"
        variant = config.get("variant")
        if isinstance(variant, str) and variant:
            platform += f"/{variant}"
        if not _PLATFORM.match(platform):
            platform = None
    kinds = {layer.media_type for layer in manifest.layers}
    compression: Compression | None = None
    if kinds and all(k.endswith("+zstd") for k in kinds):
        compression = "zstd"
    elif kinds and all(k.endswith(".tar") for k in kinds):
        compression = "none"
    elif kinds:
        compression = "gzip"
    return RecipeSpec(
        origin="upstream",
        source_date_epoch=epoch,
        platform=platform,
        format="docker" if manifest.media_type == mt.DOCKER_MANIFEST else "oci",
        compression=compression,
    )


DEFAULTS: Final = RecipeSpec(
    origin="default",
    context=".",
    build_args={},
    source_date_epoch=0,
    base_images={},
    layers=True,
    platform="linux/amd64",
    network=False,
    format="oci",
    compression="gzip",
)


def combine(specs: Sequence[RecipeSpec]) -> Recipe:
    """Each field from the first spec that has it; RecipeError when no source is known.

    `base_images` is merged (stronger origins win per name), since provenance may pin
    some bases and the mirror set others.
    """
    chosen: dict[str, Any] = {}
    origins: dict[str, str] = {}
    ordered = [*specs, DEFAULTS]
    for f in fields(RecipeSpec):
        if f.name in ("origin", "base_images"):
            continue
        for spec in ordered:
            value = getattr(spec, f.name)
            if value is not None:
                chosen[f.name] = value
                origins[f.name] = spec.origin
                break
    bases: dict[str, Digest] = {}
    for spec in reversed(ordered):
        if spec.base_images:
            bases.update(spec.base_images)
            origins["base_images"] = spec.origin
    source = chosen.get("source")
    if source is None:
        tried = ", ".join(s.origin for s in specs) or "nothing"
        raise RecipeError(
            f"no source to rebuild from (looked at: {tried}); give one in the recipe, or "
            "the image needs SLSA provenance or org.opencontainers.image.source/revision labels"
        )
    return Recipe(
        source=source,
        containerfile=chosen.get("containerfile"),
        context=chosen["context"],
        build_args=dict(chosen["build_args"]),
        source_date_epoch=chosen["source_date_epoch"],
        base_images=bases,
        layers=chosen["layers"],
        target=chosen.get("target"),
        platform=chosen["platform"],
        network=chosen["network"],
        format=chosen["format"],
        compression=chosen["compression"],
        timeout=chosen.get("timeout"),
        origins=origins,
    )
