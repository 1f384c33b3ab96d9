"""apk ordering: Alpine's version grammar, suffixes, revisions and leading zeros."""

from __future__ import annotations

import functools
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.vuln.versions import VersionError, apk

# Ascending, with the rules that decide each step (real Alpine package versions).
ASCENDING = [
    "1.0_alpha",
    "1.0_alpha1",
    "1.0_alpha2",
    "1.0_beta1",
    "1.0_pre1",
    "1.0_rc1",
    "1.0_rc1-r1",
    "1.0",
    "1.0-r0",
    "1.0-r1",
    "1.0-r10",
    "1.0_cvs20230101",
    "1.0_git20230101",
    "1.0_git20230101-r3",
    "1.0_p1",
    "1.0_p2",
    "1.0a",
    "1.0b-r1",
    "1.0.1",
    "1.01",
    "1.1",
    "1.2.13-r1",
    "1.36.1-r15",
    "1.36.1-r29",
    "3.1.4-r0",
    "3.1.4-r5",
    "3.3.0_alpha1-r0",
    "3.3.0-r0",
]


def test_known_versions_sort_in_alpine_order() -> None:
    for a, b in itertools.combinations(ASCENDING, 2):
        assert apk.compare(a, b) == -1, (a, b)
        assert apk.compare(b, a) == 1, (b, a)
    shuffled = list(reversed(ASCENDING))
    assert sorted(shuffled, key=functools.cmp_to_key(apk.compare)) == ASCENDING


def test_leading_zero_components_compare_as_strings() -> None:
    assert apk.compare("1.001", "1.01") == -1
    assert apk.compare("1.01", "1.1") == -1
    assert apk.compare("1.0", "1.00") == -1


def test_commit_hash_and_equal_versions() -> None:
    assert apk.compare("1.0~abc123-r0", "1.0-r0") == 1  # a hash is more, like a letter
    assert apk.compare("1.0~abc123-r0", "1.0.1") == -1
    assert apk.compare("2.40.1-r1", "2.40.1-r1") == 0


@pytest.mark.parametrize(
    "bad", ["", "v1.0", "0.9.8zh-r0", "1.0_foo", "1.0-1", "1.0-r", "1.0..1", "1.0 "]
)
def test_invalid_versions_cannot_be_decided(bad: str) -> None:
    with pytest.raises(VersionError) as info:
        apk.compare(bad, "1.0")
    assert info.value.scheme == "apk"


_suffix = st.sampled_from(["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"])
_apk_version = st.builds(
    lambda parts, letter, suffixes, rev: (
        ".".join(parts)
        + (letter or "")
        + "".join(f"_{s}{n}" for s, n in suffixes)
        + (f"-r{rev}" if rev is not None else "")
    ),
    st.lists(st.text("0123456789", min_size=1, max_size=3), min_size=1, max_size=4),
    st.one_of(st.none(), st.sampled_from("abz")),
    st.lists(st.tuples(_suffix, st.sampled_from(["", "1", "2", "10"])), max_size=2),
    st.one_of(st.none(), st.integers(0, 12)),
)


@settings(max_examples=300, deadline=None)
@given(_apk_version, _apk_version, _apk_version)
def test_generated_versions_form_a_total_order(a: str, b: str, c: str) -> None:
    assert apk.compare(a, a) == 0
    assert apk.compare(a, b) == -apk.compare(b, a)
    x, y, z = sorted([a, b, c], key=functools.cmp_to_key(apk.compare))
    assert apk.compare(x, y) <= 0 and apk.compare(y, z) <= 0 and apk.compare(x, z) <= 0
