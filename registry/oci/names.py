"""Repository names and tags, validated with the distribution spec's grammar."""

from __future__ import annotations

import re
from typing import Final

NAME_RE: Final = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
TAG_RE: Final = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH: Final = 255
"""Hostname plus name must fit 255 characters in common clients; we cap the name alone."""


def is_valid_name(name: str) -> bool:
    """Whether `name` is a repository name the spec allows (nested paths included)."""
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.match(name) is not None


def is_valid_tag(tag: str) -> bool:
    """Whether `tag` is a tag the spec allows."""
    return TAG_RE.match(tag) is not None


def namespace_of(name: str) -> str:
    """The first path component, which policies and grants are usually attached to."""
    return name.split("/", 1)[0]
