"""SemVer precedence for npm, Go module versions with `v` and pseudo-versions."""

from __future__ import annotations

import functools
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.vuln.versions import VersionError, compare, semver


def _ascending(cmp: functools.partial[int], versions: list[str]) -> None:
    for a, b in itertools.combinations(versions, 2):
        assert cmp(a, b) == -1, (a, b)
        assert cmp(b, a) == 1, (b, a)


def test_semver_spec_precedence_for_npm() -> None:
    _ascending(
        functools.partial(compare, "npm"),
        [
            "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
            "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "2.0.0", "2.1.0", "2.1.1",
            "4.17.20", "4.17.21",
        ],
    )  # fmt: skip
    assert compare("npm", "1.0.0+build.5", "1.0.0") == 0


def test_go_versions_with_prefix_and_pseudo_versions() -> None:
    _ascending(
        functools.partial(compare, "Go"),
        [
            "v0.0.0-20191109021931-daa7c04131f5", "v0.0.0-20200101000000-abcdef123456",
            "0.1.0", "v0.1.1", "v1.0.0-rc.1", "v1.0.0", "v1.9.1-0.20230101000000-abcdef123456",
            "v1.9.1",
        ],
    )  # fmt: skip
    assert compare("Go", "v2.0.0+incompatible", "2.0.0") == 0
    _ascending(
        functools.partial(compare, "Go"), ["go1.20.14", "go1.21rc2", "go1.21.0", "1.21.3", "go1.22"]
    )


@pytest.mark.parametrize("bad", ["1.0", "01.0.0", "1.0.0-01", "latest", "1.0.0-", ""])
def test_invalid_npm_versions_cannot_be_decided(bad: str) -> None:
    with pytest.raises(VersionError):
        compare("npm", bad, "1.0.0")


_ident = st.one_of(st.integers(0, 20).map(str), st.sampled_from(["alpha", "beta", "rc", "x-y"]))
_semver = st.builds(
    lambda core, pre: ".".join(map(str, core)) + (("-" + ".".join(pre)) if pre else ""),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.lists(_ident, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(_semver, _semver, _semver)
def test_generated_versions_form_a_total_order(a: str, b: str, c: str) -> None:
    assert semver.compare(a, a) == 0
    assert semver.compare(a, b) == -semver.compare(b, a)
    x, y, z = sorted([a, b, c], key=functools.cmp_to_key(semver.compare))
    assert semver.compare(x, z) <= 0 and semver.compare(x, y) <= 0 and semver.compare(y, z) <= 0
