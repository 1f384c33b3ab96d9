"""Image references (`registry/name:tag@digest`) as clients write them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from registry.oci.digest import Digest, DigestError
from registry.oci.names import is_valid_name, is_valid_tag

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_API: Final = "registry-1.docker.io"


class ReferenceError(ValueError):
    """A string is not an image reference."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference; `tag` and `digest` may both be set (digest wins)."""

    registry: str
    name: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, value: str, default_registry: str = DOCKER_HUB) -> Reference:
        """Parse like docker/containerd do, including Docker Hub's `library/` shorthand."""
        rest = value.strip()
        if not rest:
            raise ReferenceError("empty image reference")
        digest: Digest | None = None
        if "@" in rest:
            rest, raw_digest = rest.split("@", 1)
            try:
                digest = Digest.parse(raw_digest)
            except DigestError as exc:
                raise ReferenceError(f"{value!r}: {exc}") from exc
        registry = default_registry
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        tag: str | None = None
        last_slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > last_slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not is_valid_tag(tag):
                raise ReferenceError(f"{value!r}: invalid tag {tag!r}")
        if registry == DOCKER_HUB and "/" not in rest:
            rest = f"library/{rest}"
        if not is_valid_name(rest):
            raise ReferenceError(f"{value!r}: invalid repository name {rest!r}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, rest, tag, digest)

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        assert self.tag is not None
        return self.tag

    @property
    def api_host(self) -> str:
        """The host serving the registry API (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.registry, self.name, self.tag, digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.name}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
