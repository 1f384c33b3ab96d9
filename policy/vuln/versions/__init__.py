"""Version ordering per ecosystem, so advisory ranges can be checked exactly.

`compare(ecosystem, a, b)` returns -1, 0 or 1, or raises `VersionError` when a
version does not follow the ecosystem's grammar (the caller reports "cannot decide",
it never guesses) and `UnknownEcosystem` when Zoll has no ordering for it.
"""

from __future__ import annotations

from collections.abc import Callable

from policy.vuln.versions import apk, dpkg, maven, pep440, semver
from policy.vuln.versions.errors import VersionError

Comparator = Callable[[str, str], int]

_BY_ECOSYSTEM: dict[str, Comparator] = {
    "Debian": dpkg.compare,
    "Ubuntu": dpkg.compare,
    "Alpine": apk.compare,
    "PyPI": pep440.compare,
    "npm": semver.compare,
    "Go": semver.compare_go,
    "Maven": maven.compare,
}


class UnknownEcosystem(LookupError):
    """No version ordering is known for this ecosystem."""


def comparator(ecosystem: str) -> Comparator:
    """The ordering for an OSV ecosystem name (a release suffix like `:12` is ignored)."""
    base = ecosystem.split(":", 1)[0]
    try:
        return _BY_ECOSYSTEM[base]
    except KeyError:
        raise UnknownEcosystem(f"no version ordering for ecosystem {ecosystem!r}") from None


def compare(ecosystem: str, a: str, b: str) -> int:
    return comparator(ecosystem)(a, b)


def supported_ecosystems() -> tuple[str, ...]:
    return tuple(_BY_ECOSYSTEM)


__all__ = [
    "Comparator",
    "UnknownEcosystem",
    "VersionError",
    "comparator",
    "compare",
    "supported_ecosystems",
]
