"""What the machine scenario must yield, checked the same way for every matching path."""

from __future__ import annotations

from collections.abc import Sequence

from policy.packages import VulnFinding
from tests.policy_vuln.scenario import CRITICAL_V31, MEDIUM_V2, Scenario


def by_key(findings: Sequence[VulnFinding]) -> dict[tuple[str, str], VulnFinding]:
    keyed = {(f.id, f.package.name): f for f in findings}
    assert len(keyed) == len(findings), "one finding per (advisory, package)"
    return keyed


def assert_scenario_findings(findings: Sequence[VulnFinding], sc: Scenario) -> None:
    got = by_key(findings)
    assert set(got) == {
        ("DEBIAN-CVE-2099-0001", "libc6"),
        ("DEBIAN-CVE-2099-0003", "libssl3"),
        ("DEBIAN-CVE-2099-0003", "openssl"),
        ("DEBIAN-CVE-2099-0005", "zlib1g"),
        ("DEBIAN-CVE-2099-0007", "bash"),
    }
    glibc = got["DEBIAN-CVE-2099-0001", "libc6"]
    assert glibc.severity == "critical"
    assert glibc.cvss_score == 9.8
    assert glibc.cvss_vector == CRITICAL_V31
    assert glibc.fixed_versions == (sc.glibc_fix,)
    assert glibc.aliases == ("CVE-2099-0001",)
    assert glibc.undecided_reason is None
    assert glibc.package == sc.by_name("libc6")

    for name in ("libssl3", "openssl"):
        unfixed = got["DEBIAN-CVE-2099-0003", name]
        assert unfixed.severity == "high"  # Debian urgency, no CVSS vector
        assert unfixed.cvss_score is None
        assert unfixed.fixed_versions == ()

    zlib = got["DEBIAN-CVE-2099-0005", "zlib1g"]
    assert (zlib.severity, zlib.cvss_score, zlib.cvss_vector) == ("medium", 4.3, MEDIUM_V2)

    bash = got["DEBIAN-CVE-2099-0007", "bash"]
    assert bash.undecided_reason is not None
    assert "cannot decide" in bash.undecided_reason
    assert "not a version" in bash.undecided_reason
    assert bash.severity == "unknown"


def assert_vex_applied(findings: Sequence[VulnFinding]) -> None:
    got = by_key(findings)
    cleared = got["DEBIAN-CVE-2099-0003", "libssl3"]
    assert cleared.vex_status == "not_affected"
    assert cleared.vex_justification == "vulnerable_code_not_in_execute_path"
    assert cleared.suppressed
    others = [f for key, f in got.items() if key != ("DEBIAN-CVE-2099-0003", "libssl3")]
    assert all(f.vex_status is None and not f.suppressed for f in others)
