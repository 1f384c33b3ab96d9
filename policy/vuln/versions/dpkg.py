"""Debian package versions as dpkg orders them: `[epoch:]upstream[-revision]`.

Within upstream and revision, runs of non-digits compare by dpkg's character order
(`~` before end of string before letters before everything else) and runs of digits
compare numerically, so `1.0~rc1` sorts before `1.0`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy.vuln.versions.errors import VersionError

_UPSTREAM_RE = re.compile(r"^[0-9][A-Za-z0-9.+~:-]*$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9.+~]+$")


@dataclass(frozen=True, slots=True)
class DpkgVersion:
    epoch: int
    upstream: str
    revision: str


def parse(version: str) -> DpkgVersion:
    """Split and validate as dpkg does; bad syntax is refused rather than guessed at."""
    text = version.strip()
    if not text:
        raise VersionError("dpkg", version, "empty version")
    if any(c.isspace() for c in text):
        raise VersionError("dpkg", version, "contains whitespace")
    epoch = 0
    rest = text
    if ":" in text:
        head, rest = text.split(":", 1)
        if not head.isdigit():
            raise VersionError("dpkg", version, "epoch is not a number")
        if not rest:
            raise VersionError("dpkg", version, "nothing after the epoch colon")
        epoch = int(head)
    upstream, revision = rest, ""
    if "-" in rest:
        upstream, revision = rest.rsplit("-", 1)
        if not revision:
            raise VersionError("dpkg", version, "empty revision")
        if not _REVISION_RE.match(revision):
            raise VersionError("dpkg", version, "invalid character in revision")
    if not upstream:
        raise VersionError("dpkg", version, "empty upstream version")
    if not _UPSTREAM_RE.match(upstream):
        raise VersionError("dpkg", version, "upstream version must start with a digit")
    return DpkgVersion(epoch, upstream, revision)


def _order(c: str) -> int:
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit and digit runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as `dpkg --compare-versions` would order `a` and `b`."""
    va, vb = parse(a), parse(b)
    if va.epoch != vb.epoch:
        return -1 if va.epoch < vb.epoch else 1
    return _compare_part(va.upstream, vb.upstream) or _compare_part(va.revision, vb.revision)
