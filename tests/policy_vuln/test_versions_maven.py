"""Maven ordering, checked against Maven's own ComparableVersion (Debian's maven package)."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.vuln.versions import maven

JAR = Path("/usr/share/java/maven-artifact-3.x.jar")
MAIN = "org.apache.maven.artifact.versioning.ComparableVersion"


def maven_order(versions: list[str]) -> list[int]:
    """ComparableVersion's verdict for each consecutive pair, from its main()."""
    out = subprocess.run(
        ["java", "-cp", str(JAR), MAIN, *versions], capture_output=True, text=True, check=True
    ).stdout
    signs = {"<": -1, "==": 0, ">": 1}
    return [signs[line.split()[1]] for line in out.splitlines() if line.startswith("   ")]


def test_documented_maven_order() -> None:
    ascending = [
        "1-alpha-1", "1-beta", "1-milestone-2", "1-rc1", "1-snapshot", "1", "1-sp",
        "1-foo2", "1-foo10", "1-1", "1.1", "1.1.1-SNAPSHOT", "1.1.1", "2.0-RC1", "2.0",
        "2.0.1.RELEASE", "10.0",
    ]  # fmt: skip
    assert maven_order(ascending) == [-1] * (len(ascending) - 1)
    for a, b in itertools.pairwise(ascending):
        assert maven.compare(a, b) == -1, (a, b)
    for same in (["1", "1.0", "1.0.0", "1-ga", "1.final", "1-0"], ["1-a1", "1-alpha-1"]):
        assert maven_order(same) == [0] * (len(same) - 1)
        assert all(maven.compare(same[0], v) == 0 for v in same)


_tokens = st.sampled_from(
    ["1", "0", "2", "10", "00", "123", "alpha", "a", "b", "m", "beta", "rc", "cr", "snapshot",
     "SNAPSHOT", "ga", "final", "release", "sp", "foo", "x", "-", ".", "-", "."]
)  # fmt: skip
_version = st.lists(_tokens, min_size=1, max_size=6).map("".join)


@settings(max_examples=25, deadline=None)
@given(st.lists(_version, min_size=2, max_size=60))
def test_generated_versions_agree_with_maven(versions: list[str]) -> None:
    expected = maven_order(versions)
    ours = [maven.compare(a, b) for a, b in itertools.pairwise(versions)]
    assert ours == expected, list(zip(versions, versions[1:], expected, ours, strict=False))
