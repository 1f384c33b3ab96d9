"""Mirror sets: which upstream images Zoll keeps a sovereign copy of, declared in YAML.

    version: 1
    name: opendesk
    defaults: {platforms: [linux/amd64], schedule: 6h}
    mirrors:
      - name: nextcloud
        source: registry.opencode.de/bmi/opendesk/components/…/opendesk-nextcloud
        target: opendesk/nextcloud
        tags: ["32.0.9@sha256:…"]     # exact tags, optionally pinned to a digest,
        tag_pattern: '^32\\.0\\.\\d+$'  # and/or a regex over upstream tags,
        semver: ">=32.0.0 <33.0.0"    # and/or a SemVer range,
        digests: ["sha256:…"]         # and/or pinned digests

`source` is an image repository (`host/path`, Docker Hub names are normalised) or an OCI
image layout (`oci:/path`) for air-gapped imports.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policy.vuln.versions.errors import VersionError
from policy.vuln.versions.semver import compare as semver_compare
from policy.vuln.versions.semver import parse as semver_parse
from registry.config import UpstreamCredentials
from registry.oci.digest import Digest, DigestError
from registry.oci.names import is_valid_name, is_valid_tag
from registry.oci.reference import Reference, ReferenceError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class MirrorSetError(ValueError):
    """A mirror set is invalid; the message names the file and field."""


def seconds(value: str | float) -> float:
    """`90`, `"15m"`, `"6h"`, `"1d"` → seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30m, 6h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


class SemverRange:
    """Space-separated comparators (`>=1.2.0 <2.0.0`), alternatives joined by `||`."""

    _CMP = re.compile(r"^(>=|<=|>|<|=)?\s*v?(\S+)$")

    def __init__(self, text: str) -> None:
        self.text = text
        self.alternatives: list[list[tuple[str, str]]] = []
        for alternative in text.split("||"):
            parts = []
            for token in alternative.split():
                match = self._CMP.match(token)
                if not match:
                    raise ValueError(f"bad comparator {token!r}")
                semver_parse(match.group(2))  # validate now, not at run time
                parts.append((match.group(1) or "=", match.group(2)))
            if not parts:
                raise ValueError("empty range")
            self.alternatives.append(parts)

    def __contains__(self, version: str) -> bool:
        try:
            semver_parse(version)
        except VersionError:
            return False
        tests = {
            ">=": lambda c: c >= 0,
            "<=": lambda c: c <= 0,
            ">": lambda c: c > 0,
            "<": lambda c: c < 0,
            "=": lambda c: c == 0,
        }
        return any(
            all(tests[op](semver_compare(version, bound)) for op, bound in alternative)
            for alternative in self.alternatives
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MirrorEntry(_Model):
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9._-]*$")
    source: str
    target: str
    tags: list[str] = Field(default_factory=list)
    tag_pattern: str | None = None
    semver: str | None = None
    digests: list[str] = Field(default_factory=list)
    platforms: list[str] | None = None
    schedule: str | float | None = None
    attachments: bool = True
    insecure: bool = Field(False, description="plain HTTP upstream (loopback tests only)")
    rebuild: dict[str, Any] | None = Field(
        None, description="explicit rebuild recipe (docs/rebuild.md); else derived"
    )
    credentials: UpstreamCredentials | None = None
    values: dict[str, Any] | None = Field(
        None, description="Helm values a chart is rendered with (beside its defaults)"
    )
    chart_images: bool = Field(
        True, description="a chart: also mirror every image it deploys from elsewhere"
    )
    images_target: str | None = Field(
        None,
        description="repository prefix for the images a chart deploys (default: the first "
        "component of target, e.g. opendesk/ for opendesk/charts/x)",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(f"{value!r} is not a valid repository name")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.startswith("oci:"):
            return value
        try:
            ref = Reference.parse(value)
        except ReferenceError as exc:
            raise ValueError(str(exc)) from exc
        if ":" in value.rsplit("/", 1)[-1] or "@" in value:
            raise ValueError("source names a repository; put tags and digests in tags/digests")
        return f"{ref.registry}/{ref.name}"

    @field_validator("tags")
    @classmethod
    def _tags(cls, values: list[str]) -> list[str]:
        for value in values:
            tag, _, pinned = value.partition("@")
            if not is_valid_tag(tag):
                raise ValueError(f"{tag!r} is not a valid tag")
            if pinned:
                try:
                    Digest.parse(pinned)
                except DigestError as exc:
                    raise ValueError(f"{value!r}: {exc}") from exc
        return values

    @field_validator("tag_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("semver")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None:
            SemverRange(value)
        return value

    @field_validator("digests")
    @classmethod
    def _digests(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                Digest.parse(value)
            except DigestError as exc:
                raise ValueError(str(exc)) from exc
        return values

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            seconds(value)
        return value

    def image_target(self, repository: str) -> str:
        """Where an image a chart deploys (upstream `repository`) is mirrored to."""
        prefix = self.images_target or self.target.split("/", 1)[0] + "/"
        return (prefix.rstrip("/") + "/" + repository).lower()

    @model_validator(mode="after")
    def _something(self) -> MirrorEntry:
        if not (self.tags or self.tag_pattern or self.semver or self.digests):
            raise ValueError("name at least one of tags, tag_pattern, semver or digests")
        return self

    def pinned(self) -> dict[str, str | None]:
        """Exact tags → the digest they must resolve to upstream (None: any)."""
        out: dict[str, str | None] = {}
        for value in self.tags:
            tag, _, digest = value.partition("@")
            out[tag] = digest or None
        return out

    def wants_tag(self, tag: str) -> bool:
        if tag in self.pinned():
            return True
        if self.tag_pattern and re.fullmatch(self.tag_pattern, tag):
            return True
        return bool(self.semver and tag in SemverRange(self.semver))

    @property
    def lists_tags(self) -> bool:
        """Whether resolving needs the upstream tag list (patterns or ranges)."""
        return bool(self.tag_pattern or self.semver)


class Defaults(_Model):
    platforms: list[str] = Field(default_factory=list)
    schedule: str | float = "6h"


class Release(_Model):
    """The release a set was made from (`zoll mirror apply` of a release description)."""

    name: str
    version: str | None = None
    charts: dict[str, str] = Field(default_factory=dict)
    """Chart key → mirror entry name."""
    images: dict[str, str] = Field(default_factory=dict)
    """Image key → mirror entry name (images used under several keys share an entry)."""


class MirrorSet(_Model):
    version: Literal[1] = 1
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9._-]*$")
    defaults: Defaults = Defaults()
    mirrors: list[MirrorEntry]
    release: Release | None = None

    @model_validator(mode="after")
    def _unique(self) -> MirrorSet:
        names = [m.name for m in self.mirrors]
        if len(set(names)) != len(names):
            raise ValueError("mirror names must be unique within a set")
        return self

    def platforms(self, entry: MirrorEntry) -> list[str]:
        return entry.platforms if entry.platforms is not None else self.defaults.platforms

    def schedule_seconds(self, entry: MirrorEntry) -> float:
        return seconds(entry.schedule if entry.schedule is not None else self.defaults.schedule)

    def entry(self, name: str) -> MirrorEntry:
        for entry in self.mirrors:
            if entry.name == name:
                return entry
        raise KeyError(name)

    @classmethod
    def parse(cls, text: str | bytes, where: str = "mirror set") -> tuple[MirrorSet, str]:
        """The set and the SHA-256 of its text; MirrorSetError names what is wrong."""
        raw = text.encode() if isinstance(text, str) else text
        try:
            data: Any = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise MirrorSetError(f"{where}: not valid YAML: {exc}") from exc
        if isinstance(data, dict) and "release" in data and "mirrors" not in data:
            from registry.mirror.release import release_to_set

            data = release_to_set(data, where)
        try:
            return cls.model_validate(data), hashlib.sha256(raw).hexdigest()
        except ValidationError as exc:
            problems = "\n".join(
                f"  {'.'.join(str(p) for p in e['loc']) or where}: {e['msg']}" for e in exc.errors()
            )
            raise MirrorSetError(f"{where}: invalid mirror set:\n{problems}") from None

    @classmethod
    def load(cls, path: Path) -> tuple[MirrorSet, str]:
        try:
            return cls.parse(path.read_bytes(), str(path))
        except OSError as exc:
            raise MirrorSetError(f"cannot read {path}: {exc.strerror}") from exc
