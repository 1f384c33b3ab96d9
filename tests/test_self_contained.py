"""The test suite needs nothing outside the repository: a fresh clone runs `make test`."""

from __future__ import annotations

import re

from tests.support.paths import FIXTURES, REPO

OUTSIDE = re.compile(r"""\.\./shared|parents\[\d\]\.parent|parent\s*/\s*["']shared["']""")


def test_no_test_or_bench_reads_outside_the_checkout() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in ("tests", "bench")
        for path in (REPO / folder).rglob("*.py")
        if path.name != "test_self_contained.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_fixtures_are_in_the_repository_with_their_origin() -> None:
    for kind, must in (("sigstore", "bundle_v3.txt.sigstore"), ("in-toto", "demo_files/alice")):
        assert (FIXTURES / kind / must).is_file()
        assert "Apache-2.0" in (FIXTURES / kind / "README.md").read_text()
