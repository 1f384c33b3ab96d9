"""Semantic Versioning 2.0 precedence, as npm and Go modules use it.

`MAJOR.MINOR.PATCH[-prerelease][+build]`: build metadata is ignored, a pre-release
sorts before its release, pre-release identifiers compare numerically when both are
numbers, numbers sort before words, and a longer identifier list wins a tie. Go
versions carry a `v` prefix (`v1.2.3`, pseudo-versions such as
`v0.0.0-20240101000000-abcdef123456` are ordinary pre-releases, `+incompatible` is
build metadata); the Go toolchain (`stdlib`) writes `go1.21.3` or `go1.21rc2`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy.vuln.versions.errors import VersionError

_NUM = r"0|[1-9][0-9]*"
_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER_RE = re.compile(
    rf"^(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_GO_TOOLCHAIN_RE = re.compile(
    rf"^(?:go)?(?P<major>{_NUM})(?:\.(?P<minor>{_NUM}))?(?:\.(?P<patch>{_NUM}))?"
    r"(?P<pre>(?:alpha|beta|rc)[0-9]+)?$"
)


@dataclass(frozen=True, slots=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()


def parse(version: str, *, scheme: str = "semver") -> SemVer:
    """Parse a strict SemVer 2.0 version (a leading `v` is accepted)."""
    text = version[1:] if version[:1] in ("v", "V") else version
    match = _SEMVER_RE.match(text)
    if not match:
        raise VersionError(scheme, version, "not a SemVer 2.0 version (MAJOR.MINOR.PATCH)")
    pre = match.group("pre")
    ids: tuple[int | str, ...] = ()
    if pre:
        ids = tuple(int(p) if p.isdigit() else p for p in pre.split("."))
    return SemVer(int(match["major"]), int(match["minor"]), int(match["patch"]), ids)


def parse_go(version: str) -> SemVer:
    """Go module versions, plus the toolchain's `go1.21.3` / `1.21rc2` spellings."""
    try:
        return parse(version, scheme="go")
    except VersionError:
        match = _GO_TOOLCHAIN_RE.match(version)
        if not match:
            raise
        pre: tuple[int | str, ...] = ()
        if match["pre"]:
            word = match["pre"].rstrip("0123456789")
            pre = (word, int(match["pre"][len(word) :]))
        return SemVer(int(match["major"]), int(match["minor"] or 0), int(match["patch"] or 0), pre)


def _compare_ids(a: tuple[int | str, ...], b: tuple[int | str, ...]) -> int:
    if not a or not b:
        return (not a) - (not b)  # no pre-release > any pre-release
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        if isinstance(x, int) and isinstance(y, int):
            return -1 if x < y else 1
        if isinstance(x, int):
            return -1
        if isinstance(y, int):
            return 1
        return -1 if x < y else 1
    return (len(a) > len(b)) - (len(a) < len(b))


def compare_parsed(a: SemVer, b: SemVer) -> int:
    ka, kb = (a.major, a.minor, a.patch), (b.major, b.minor, b.patch)
    if ka != kb:
        return -1 if ka < kb else 1
    return _compare_ids(a.prerelease, b.prerelease)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 by SemVer precedence (npm)."""
    return compare_parsed(parse(a), parse(b))


def compare_go(a: str, b: str) -> int:
    """-1, 0 or 1 by Go module version order."""
    return compare_parsed(parse_go(a), parse_go(b))
