"""Python package versions by PEP 440, through `packaging` (pip's own implementation)."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from policy.vuln.versions.errors import VersionError


def parse(version: str) -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        raise VersionError("pep440", version, "not a PEP 440 version") from None


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as pip orders `a` and `b`."""
    va, vb = parse(a), parse(b)
    return (va > vb) - (va < vb)
