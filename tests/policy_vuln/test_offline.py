"""Matching without a database gives exactly the store's answers."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from policy.vuln import Rejected, match_offline
from tests.policy_vuln import scenario
from tests.policy_vuln.expectations import assert_scenario_findings, assert_vex_applied, by_key


async def test_offline_tree_with_vex(machine_scenario: scenario.Scenario, tmp_path: Path) -> None:
    sc = machine_scenario
    export = scenario.write_tree(tmp_path / "osv", sc.records)
    findings = await match_offline(sc.packages, export)
    assert_scenario_findings(findings, sc)

    vex_file = tmp_path / "vex.json"
    vex_file.write_text(json.dumps(scenario.csaf_vex(sc.by_name("libssl3"), "CVE-2099-0003")))
    with_vex = await match_offline(sc.packages, export, [vex_file])
    assert_scenario_findings(with_vex, sc)
    assert_vex_applied(with_vex)


async def test_offline_zip_keeps_newest_copy_and_honours_withdrawal(
    machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    sc = machine_scenario
    newer_fixed = dict(sc.records["DEBIAN-CVE-2099-0003"], modified="2024-06-01T00:00:00Z")
    newer_fixed["affected"] = [
        dict(
            newer_fixed["affected"][0],
            ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0.0-1"}]}],
        )
    ]
    withdrawn = dict(
        sc.records["DEBIAN-CVE-2099-0001"],
        modified="2024-06-01T00:00:00Z",
        withdrawn="2024-06-01T00:00:00Z",
    )
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("b/newer-0003.json", json.dumps(newer_fixed))
        for rid, data in sc.records.items():
            zf.writestr(f"a/{rid}.json", json.dumps(data))
        zf.writestr("c/withdrawn-0001.json", json.dumps(withdrawn))
        zf.writestr("d/broken.json", "{not json")
    rejected: list[Rejected] = []
    keys = set(by_key(await match_offline(sc.packages, archive, on_rejected=rejected.append)))
    assert ("DEBIAN-CVE-2099-0003", "libssl3") not in keys
    assert ("DEBIAN-CVE-2099-0001", "libc6") not in keys
    assert ("DEBIAN-CVE-2099-0005", "zlib1g") in keys
    assert [r.source for r in rejected] == ["all.zip:d/broken.json"]
    assert "invalid JSON" in rejected[0].reason
