"""OSV range semantics per ecosystem, severity choice and undecided verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from policy.packages import Package
from policy.vuln.errors import OsvFormatError
from policy.vuln.matching import evaluate, findings_for
from policy.vuln.osv import parse_advisory


def advisory(ecosystem: str, name: str, *ranges: dict[str, Any], **extra: Any) -> dict[str, Any]:
    affected = {"package": {"ecosystem": ecosystem, "name": name}, "ranges": list(ranges)}
    affected.update(extra.pop("affected_extra", {}))
    return {"id": "TEST-1", "modified": "2024-01-01T00:00:00Z", "affected": [affected], **extra}


def rng(kind: str, *events: tuple[str, str]) -> dict[str, Any]:
    return {"type": kind, "events": [{k: v} for k, v in events]}


def pkg(ecosystem: str, name: str, version: str, **kw: Any) -> Package:
    return Package(ecosystem=ecosystem, name=name, version=version, purl=f"pkg:x/{name}", **kw)


@pytest.mark.parametrize(
    ("version", "affected"),
    [("0.9", False), ("1.0", True), ("1.4.9", True), ("1.5", False), ("1.9", False),
     ("2.0", True), ("2.3", True), ("2.3.1", False), ("3.0", False)],
)  # fmt: skip
def test_multiple_intervals_with_fixed_and_last_affected(version: str, affected: bool) -> None:
    adv = parse_advisory(
        advisory(
            "PyPI",
            "Demo_Pkg",
            rng("ECOSYSTEM", ("introduced", "1.0"), ("fixed", "1.5")),
            rng("ECOSYSTEM", ("introduced", "2.0"), ("last_affected", "2.3")),
        )
    )
    findings = findings_for(adv, [pkg("PyPI", "demo.pkg", version)])  # PEP 503 names
    assert bool(findings) is affected
    if findings:
        assert findings[0].fixed_versions == ("1.5",)


def test_explicit_versions_list_and_limit() -> None:
    listed = parse_advisory(
        advisory("npm", "left-pad", affected_extra={"versions": ["1.0.0", "1.0.1"]})
    )
    assert evaluate(listed.affected[0], "1.0.1").affected is True
    assert evaluate(listed.affected[0], "1.0.2").affected is False
    limited = parse_advisory(
        advisory("npm", "x", rng("SEMVER", ("introduced", "0"), ("limit", "2.0.0")))
    )
    assert evaluate(limited.affected[0], "1.9.9").affected is True
    assert evaluate(limited.affected[0], "2.0.0").affected is False


def test_go_semver_ranges_against_v_prefixed_versions() -> None:
    adv = parse_advisory(
        advisory(
            "Go",
            "golang.org/x/net",
            rng("SEMVER", ("introduced", "0"), ("fixed", "0.17.0")),
        )
    )
    vulnerable = pkg("Go", "golang.org/x/net", "v0.0.0-20220722155237-a158d28d115b")
    fixed = pkg("Go", "golang.org/x/net", "v0.17.0")
    assert [f.package for f in findings_for(adv, [vulnerable, fixed])] == [vulnerable]


def test_alpine_release_and_maven_names() -> None:
    alpine = parse_advisory(
        advisory(
            "Alpine:v3.20", "openssl", rng("ECOSYSTEM", ("introduced", "0"), ("fixed", "3.3.2-r0"))
        )
    )
    hit = pkg("Alpine", "libcrypto3", "3.3.1-r3", release="v3.20", source_name="openssl")
    other_release = pkg("Alpine", "libcrypto3", "3.3.1-r3", release="v3.19", source_name="openssl")
    assert [f.package for f in findings_for(alpine, [hit, other_release])] == [hit]

    maven = parse_advisory(
        advisory(
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            rng("ECOSYSTEM", ("introduced", "2.0-beta9"), ("fixed", "2.15.0")),
            severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
        )
    )
    log4j = pkg("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1")
    (finding,) = findings_for(maven, [log4j, pkg("Maven", log4j.name, "2.17.1")])
    assert (finding.severity, finding.cvss_score, finding.fixed_versions) == (
        "critical",
        10.0,
        ("2.15.0",),
    )


def test_severity_falls_back_to_database_text_then_unknown() -> None:
    base = advisory("npm", "a", rng("SEMVER", ("introduced", "0")))
    text = parse_advisory(dict(base, database_specific={"severity": "MODERATE"}))
    broken_vector = parse_advisory(
        dict(base, severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}],
             database_specific={"severity": "LOW"})
    )  # fmt: skip
    nothing = parse_advisory(base)
    package = [pkg("npm", "a", "1.0.0")]
    assert findings_for(text, package)[0].severity == "medium"
    assert findings_for(broken_vector, package)[0].severity == "low"
    assert findings_for(nothing, package)[0].severity == "unknown"


def test_unknown_ecosystem_and_bad_versions_are_undecided_not_dropped() -> None:
    weird = parse_advisory(advisory("Hackage", "aeson", rng("ECOSYSTEM", ("introduced", "0"))))
    (finding,) = findings_for(weird, [pkg("Hackage", "aeson", "2.0")])
    assert finding.undecided_reason and "no version ordering" in finding.undecided_reason
    npm = parse_advisory(
        advisory("npm", "b", rng("SEMVER", ("introduced", "0"), ("fixed", "2.0.0")))
    )
    (finding,) = findings_for(npm, [pkg("npm", "b", "garbage")])
    assert finding.undecided_reason and "garbage" in finding.undecided_reason
    assert evaluate(npm.affected[0], "3.0.0").affected is False


def test_git_only_ranges_do_not_match_package_versions() -> None:
    adv = parse_advisory(advisory("npm", "c", rng("GIT", ("introduced", "abc123"))))
    assert findings_for(adv, [pkg("npm", "c", "1.0.0")]) == []


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"modified": "2024-01-01T00:00:00Z"}, "id"),
        ({"id": "X"}, "modified"),
        ({"id": "X", "modified": "yesterday"}, "RFC 3339"),
        (
            {"id": "X", "modified": "2024-01-01T00:00:00Z", "affected": {}},
            "affected must be a list",
        ),
        ({"id": "X", "modified": "2024-01-01T00:00:00Z", "aliases": "CVE-1"}, "aliases"),
        (
            advisory("npm", "a", {"type": "SEMVER", "events": [{"introduced": "0", "fixed": "1"}]}),
            "exactly one",
        ),
        (advisory("npm", "a", {"type": "RANGE", "events": [{"introduced": "0"}]}), "type"),
        ([1, 2], "must be an object"),
    ],
)
def test_schema_violations_name_the_field(record: Any, reason: str) -> None:
    with pytest.raises(OsvFormatError) as info:
        parse_advisory(record, "rec.json")
    assert reason in info.value.reason
    assert info.value.source.startswith("rec.json")
