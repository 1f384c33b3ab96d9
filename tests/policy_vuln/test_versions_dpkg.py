"""dpkg ordering, checked against the real `dpkg --compare-versions` on this machine."""

from __future__ import annotations

import functools
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.vuln.versions import VersionError, dpkg
from tests.policy_vuln.debian import dpkg_compare, installed_versions

_OP = {-1: "lt", 0: "eq", 1: "gt"}


def test_installed_versions_sort_as_dpkg_sorts_them() -> None:
    versions = installed_versions()
    assert len(versions) > 50
    ordered = sorted(versions, key=functools.cmp_to_key(dpkg.compare))
    for a, b in itertools.pairwise(ordered):
        assert dpkg_compare(a, "le", b), f"{a} should not sort before {b}"
    rng = random.Random(20240501)
    for _ in range(150):
        a, b = rng.sample(versions, 2)
        assert dpkg_compare(a, _OP[dpkg.compare(a, b)], b), (a, b)


_upstream = st.builds(
    lambda head, tail: head + tail,
    st.text("0123456789", min_size=1, max_size=3),
    st.text("0123456789ab.+~", max_size=8),
)
_revision = st.text("0123456789ab.+~", min_size=1, max_size=6)
_version = st.builds(
    lambda epoch, upstream, revision: (
        (f"{epoch}:" if epoch is not None else "") + upstream + (f"-{revision}" if revision else "")
    ),
    st.one_of(st.none(), st.integers(0, 3)),
    _upstream,
    st.one_of(st.none(), _revision),
)


@settings(max_examples=300, deadline=None)
@given(_version, _version)
def test_generated_versions_agree_with_dpkg(a: str, b: str) -> None:
    assert dpkg_compare(a, _OP[dpkg.compare(a, b)], b), (a, b)


def test_tilde_sorts_before_everything_and_epoch_dominates() -> None:
    assert dpkg.compare("1.0~rc1", "1.0") == -1
    assert dpkg.compare("1.0~~", "1.0~") == -1
    assert dpkg.compare("1:0.1", "9.9") == 1
    assert dpkg.compare("1.0", "1.0-0") == 0
    assert dpkg.compare("3.0.11-1~deb12u2", "3.0.11-1") == -1


@pytest.mark.parametrize("bad", ["", "a1.0", "1.0 beta", "x:1.0", "1:", "1.0-", "1.0-r$1"])
def test_bad_versions_cannot_be_decided(bad: str) -> None:
    with pytest.raises(VersionError) as info:
        dpkg.compare(bad, "1.0")
    assert info.value.scheme == "dpkg"
