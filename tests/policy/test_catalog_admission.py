"""Catalog overrides, the report's JSON and statement, and the admission decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy import (
    AdmissionRule,
    CatalogError,
    HardeningReport,
    ReportError,
    decide,
    load_catalog,
)
from policy.report import CriterionResult
from registry.oci.errors import ErrorCode

REQUIRED_FRAMEWORKS = {
    "BSI IT-Grundschutz SYS.1.6",
    "CIS Docker Benchmark",
    "NIST SP 800-190",
}


def test_shipped_catalog_covers_the_issue_checks() -> None:
    catalog = load_catalog()
    checks = {c.check for c in catalog.criteria}
    assert {
        "non_root_user",
        "no_setuid",
        "no_world_writable",
        "no_secrets",
        "no_package_caches",
        "oci_labels",
        "base_image_pinned",
        "healthcheck",
        "unprivileged_ports",
        "not_latest_only",
        "size_bounds",
        "sbom_attached",
        "provenance_attached",
        "no_known_vulnerabilities",
    } <= checks
    for c in catalog.criteria:
        assert c.rule and "\n" not in c.rule and c.rationale, c.id
        assert len({s.framework for s in c.sources}) >= 3, c.id
    frameworks = {s.framework for c in catalog.criteria for s in c.sources}
    assert frameworks >= REQUIRED_FRAMEWORKS
    assert any("Iron Bank" in f for f in frameworks)
    assert catalog.digest == load_catalog().digest


def test_override_file_changes_severity_params_and_enabled(tmp_path: Path) -> None:
    override = tmp_path / "team.yaml"
    override.write_text(
        "name: team-a\n"
        "criteria:\n"
        "  HC-20: {severity: low, params: {allow: [/usr/bin/passwd]}}\n"
        "  HC-25: {enabled: false}\n"
    )
    base = load_catalog()
    catalog = load_catalog([override])
    assert catalog.overrides == ("team-a",)
    assert catalog.get("HC-20").severity == "low"
    assert catalog.get("HC-20").params["allow"] == ["/usr/bin/passwd"]
    assert not catalog.get("HC-25").enabled
    assert catalog.get("HC-20").rule == base.get("HC-20").rule
    assert catalog.digest != base.digest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ncriteria: {HC-99: {enabled: false}}\n", "no criterion 'HC-99'"),
        ("name: x\ncriteria: {HC-20: {rule: anything}}\n", "only enabled, severity and params"),
        ("name: x\ncriteria: {HC-20: {severity: urgent}}\n", "severity must be one of"),
        ("name: x\ncriteria: {HC-20: {params: {alow: []}}}\n", "unknown parameter 'alow'"),
        ("name: x\ncriteria: {HC-34: {params: {max_bytes: big}}}\n", "must be a int"),
        ("criteria: {}\n", "needs a 'name'"),
        ("name: x\n  bad: [\n", "not valid YAML"),
    ],
)
def test_bad_overrides_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    override = tmp_path / "o.yaml"
    override.write_text(text)
    with pytest.raises(CatalogError, match=r"o\.yaml") as info:
        load_catalog([override])
    assert message in str(info.value)


def _report(*results: tuple[str, str, str]) -> HardeningReport:
    return HardeningReport(
        subject_digest="sha256:" + "1" * 64,
        subject_name="zoll.test/app",
        catalog_name="zoll-hardening",
        catalog_version="1.0.0",
        catalog_digest="sha256:" + "2" * 64,
        catalog_overrides=(),
        analyzer_version="zoll-analyzer/1.0",
        analysis_complete=True,
        evaluated_at="2026-01-01T00:00:00Z",
        results=tuple(
            CriterionResult(cid, f"title {cid}", f"rule {cid}", sev, status, (f"why {cid}",))  # type: ignore[arg-type]
            for cid, sev, status in results
        ),
    )


def test_report_round_trips_and_rejects_malformed_documents() -> None:
    report = _report(("HC-18", "high", "fail"), ("HC-25", "low", "pass"))
    again = HardeningReport.from_json(report.to_json())
    assert again == report
    with pytest.raises(ReportError):
        HardeningReport.from_json({"schema": "something else"})
    broken = report.to_json()
    del broken["results"][0]["status"]
    with pytest.raises(ReportError, match="status"):
        HardeningReport.from_json(broken)


def test_admission_enforce_warn_off() -> None:
    report = _report(
        ("HC-18", "high", "fail"), ("HC-25", "low", "fail"), ("HC-17", "critical", "pass")
    )
    denied = decide(report, AdmissionRule("enforce"))
    assert not denied.allowed
    assert [r.id for r in denied.blocking] == ["HC-18"]
    error = denied.error()
    assert error.code is ErrorCode.DENIED and error.status == 403
    body = error.body()["errors"][0]
    assert body["code"] == "DENIED" and "HC-18" in body["message"]
    assert body["detail"]["criteria"][0]["id"] == "HC-18"

    warned = decide(report, AdmissionRule("warn"))
    assert warned.allowed and "HC-18" in warned.warnings[0]
    assert decide(report, AdmissionRule("off")).allowed
    assert not decide(report, AdmissionRule("enforce", fail_on="low")).allowed
    assert [r.id for r in decide(report, AdmissionRule("enforce", fail_on="low")).blocking] == [
        "HC-18",
        "HC-25",
    ]
    waived = decide(report, AdmissionRule("enforce", waive=frozenset({"HC-18"})))
    assert waived.allowed and waived.warnings == ("HC-18 failed but is waived",)


def test_unchecked_image_is_denied_only_when_enforcing() -> None:
    assert not decide(None, AdmissionRule("enforce")).allowed
    assert decide(None, AdmissionRule("warn")).allowed
    with pytest.raises(CatalogError):
        AdmissionRule("block")  # type: ignore[arg-type]
