"""PEP 440 ordering agrees with `packaging` (pip's implementation) on real versions."""

from __future__ import annotations

import functools
import itertools
from importlib import metadata

import pytest
from packaging.version import Version

from policy.vuln.versions import UnknownEcosystem, VersionError, compare, pep440


def test_installed_distribution_versions_sort_like_pip() -> None:
    versions = sorted({d.version for d in metadata.distributions()})
    assert len(versions) > 20
    ours = sorted(versions, key=functools.cmp_to_key(pep440.compare))
    assert [Version(v) for v in ours] == sorted(Version(v) for v in versions)
    chain = ["1.0.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1!0.1"]
    for a, b in itertools.combinations(chain, 2):
        assert (pep440.compare(a, b), pep440.compare(b, a)) == (-1, 1), (a, b)


def test_invalid_version_and_unknown_ecosystem_are_explicit() -> None:
    with pytest.raises(VersionError):
        compare("PyPI", "not-a-version", "1.0")
    with pytest.raises(UnknownEcosystem):
        compare("Hackage", "1.0", "1.1")
