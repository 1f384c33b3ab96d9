"""The mirror CLI imports policy's version parsers; that must not load the analyzer,
the vulnerability store or anything else heavy (it cost the CLI 0.3 s per start)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import policy
import policy.vuln


def test_version_parsers_load_without_the_rest_of_policy() -> None:
    probe = (
        "import sys, registry.mirror.sets\n"
        "heavy = [m for m in ('policy.analyzer', 'policy.vuln.store', 'policy.evaluate')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_attributes_still_resolve() -> None:
    assert callable(policy.analyze_image)
    assert policy.vuln.VulnStore.__module__ == "policy.vuln.store"
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = policy.missing  # type: ignore[attr-defined]
