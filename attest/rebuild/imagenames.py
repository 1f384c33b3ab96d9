"""Image names as a Containerfile writes them, normalised the way Docker resolves them.

`FROM alpine:3.20`, provenance materials (`pkg:docker/alpine@3.20`) and recipes
(`docker.io/library/alpine:3.20`) must all name the same base image, so every lookup
goes through `normalise`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from registry.oci.digest import Digest, DigestError

_DOMAIN_HINT: Final = re.compile(r"[.:]")
_NAME: Final = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class ImageNameError(ValueError):
    """Not an image reference."""


@dataclass(frozen=True, slots=True)
class ImageName:
    """`registry/repository[:tag][@digest]`, registry and `library/` filled in."""

    repository: str
    tag: str | None
    digest: Digest | None

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def tagged(self) -> str:
        """`repository:tag` (`latest` when none was written): how a base is looked up."""
        return f"{self.repository}:{self.tag or 'latest'}"


def normalise(reference: str) -> ImageName:
    """Parse `alpine`, `alpine:3`, `ghcr.io/o/r:1@sha256:…` into a full `ImageName`."""
    text = reference.strip()
    digest: Digest | None = None
    if "@" in text:
        text, _, raw = text.partition("@")
        try:
            digest = Digest.parse(raw)
        except DigestError as exc:
            raise ImageNameError(f"{reference!r}: {exc}") from exc
    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
            raise ImageNameError(f"{reference!r}: invalid tag {tag!r}")
    first, sep, rest = text.partition("/")
    if not sep or (not _DOMAIN_HINT.search(first) and first != "localhost"):
        domain, path = "docker.io", text
    else:
        domain, path = first, rest
    if domain in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        domain = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    if not _NAME.match(path):
        raise ImageNameError(f"{reference!r} is not a valid image name")
    return ImageName(f"{domain}/{path}", tag, digest)
