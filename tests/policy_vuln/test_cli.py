"""`zoll vulndb import` and `zoll vulndb status` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import zipfile
from pathlib import Path

from tests.policy_vuln import scenario

ZOLL = str(Path(sys.executable).with_name("zoll"))


async def zoll(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        ZOLL,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_import_zip_and_vex_then_status(
    pg_dsn: str, machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    sc = machine_scenario
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for rid, data in sc.records.items():
            zf.writestr(f"{rid}.json", json.dumps(data))
    vex = tmp_path / "vex.json"
    vex.write_text(json.dumps(scenario.csaf_vex(sc.by_name("libssl3"), "CVE-2099-0003")))

    code, out, _ = await zoll(
        "vulndb", "import", str(archive), "--vex", str(vex), "--dsn", pg_dsn, "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert (result["osv"]["seen"], result["osv"]["inserted"], result["osv"]["rejected"]) == (
        8,
        8,
        0,
    )
    assert result["vex"][0]["document"] == "ZOLL-VEX-2099-0001"
    assert result["fingerprint"].startswith(result["vex"][0]["fingerprint"] + "@")

    code, out, _ = await zoll("vulndb", "status", "--dsn", pg_dsn, "--json")
    status = json.loads(out)
    assert code == 0
    assert status["fingerprint"] == result["vex"][0]["fingerprint"]
    assert status["counts"] == {"live": 7, "withdrawn": 1, "vex_statements": 1}
    assert [run["kind"] for run in status["imports"]] == ["vex", "osv"]

    code, _, err = await zoll("vulndb", "import", str(archive), "--dsn", pg_dsn)
    assert code == 0, err
    assert "data fingerprint: sha256:" in err and "unchanged" in err


async def test_import_reports_rejects_and_bad_paths(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    code, _, err = await zoll("vulndb", "import", str(tmp_path), "--dsn", pg_dsn)
    assert code == 1
    assert "rejected" in err and "bad.json" in err and "invalid JSON" in err
    code, _, err = await zoll("vulndb", "import", str(tmp_path / "nope.zip"), "--dsn", pg_dsn)
    assert code == 1
    assert "no such file or directory" in err
