"""The PostgreSQL store: import, match, VEX, idempotence, updates, withdrawals, zip exports."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import asyncpg

from policy.vuln import VulnStore, import_osv, import_vex
from policy.vuln.fingerprint import EMPTY
from tests.policy_vuln import scenario
from tests.policy_vuln.expectations import assert_scenario_findings, assert_vex_applied, by_key


async def test_machine_packages_match_exactly(
    pool: asyncpg.Pool, machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    sc = machine_scenario
    export = scenario.write_tree(tmp_path / "osv", sc.records)
    seen = []
    summary = await import_osv(pool, export, progress=lambda c: seen.append(c.seen))
    assert (summary.seen, summary.inserted, summary.rejected) == (8, 8, 0)
    assert summary.withdrawn == 1
    assert seen and seen[-1] == 8
    store = VulnStore(pool)
    assert_scenario_findings(await store.match(sc.packages), sc)

    vex_file = tmp_path / "vex.json"
    vex_file.write_text(json.dumps(scenario.csaf_vex(sc.by_name("libssl3"), "CVE-2099-0003")))
    before = await store.fingerprint()
    vex = await import_vex(pool, vex_file)
    assert (vex.format, vex.document, vex.statements, vex.changed) == (
        "csaf",
        "ZOLL-VEX-2099-0001",
        1,
        True,
    )
    assert vex.fingerprint.digest != before.digest
    findings = await store.match(sc.packages)
    assert_scenario_findings(findings, sc)
    assert_vex_applied(findings)
    again = await import_vex(pool, vex_file)
    assert not again.changed and again.fingerprint == vex.fingerprint


async def test_reimport_changes_nothing(
    pool: asyncpg.Pool, machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    export = scenario.write_tree(tmp_path / "osv", machine_scenario.records)
    first = await import_osv(pool, export)
    assert first.changed and first.fingerprint.digest != EMPTY
    async with pool.acquire() as conn:
        rows_before = await conn.fetch("SELECT * FROM vuln_records ORDER BY id")
        index_before = await conn.fetch("SELECT * FROM vuln_affected ORDER BY 1, 2, 3, 4")
    second = await import_osv(pool, export)
    assert (second.inserted, second.updated, second.unchanged, second.stale) == (0, 0, 8, 0)
    assert not second.changed
    assert second.fingerprint == first.fingerprint  # same digest, same changed_at
    async with pool.acquire() as conn:
        assert await conn.fetch("SELECT * FROM vuln_records ORDER BY id") == rows_before
        assert await conn.fetch("SELECT * FROM vuln_affected ORDER BY 1, 2, 3, 4") == index_before
        runs = await conn.fetch("SELECT fingerprint FROM vuln_imports ORDER BY id")
    assert [r["fingerprint"] for r in runs] == [first.fingerprint.digest] * 2


async def test_newer_modified_wins_and_older_copies_are_ignored(
    pool: asyncpg.Pool, machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    sc = machine_scenario
    await import_osv(pool, scenario.write_tree(tmp_path / "v1", sc.records))
    store = VulnStore(pool)
    fp1 = await store.fingerprint()

    fixed = dict(sc.records["DEBIAN-CVE-2099-0003"], modified="2024-06-01T00:00:00Z")
    fixed["affected"] = [
        dict(
            fixed["affected"][0],
            ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0.0-1"}]}],
        )
    ]
    update = await import_osv(pool, scenario.write_tree(tmp_path / "v2", {"x": fixed}))
    assert (update.updated, update.inserted) == (1, 0)
    fp2 = await store.fingerprint()
    assert fp2.digest != fp1.digest
    assert fp1.changed_at is not None and fp2.changed_at is not None
    assert fp2.changed_at > fp1.changed_at
    keys = set(by_key(await store.match(sc.packages)))
    assert ("DEBIAN-CVE-2099-0003", "libssl3") not in keys
    assert ("DEBIAN-CVE-2099-0001", "libc6") in keys

    stale = await import_osv(
        pool, scenario.write_tree(tmp_path / "v0", {"x": sc.records["DEBIAN-CVE-2099-0003"]})
    )
    assert (stale.stale, stale.updated, stale.changed) == (1, 0, False)
    assert await store.fingerprint() == fp2
    assert set(by_key(await store.match(sc.packages))) == keys


async def test_withdrawn_record_drops_out_and_stays_out(
    pool: asyncpg.Pool, machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    sc = machine_scenario
    await import_osv(pool, scenario.write_tree(tmp_path / "v1", sc.records))
    store = VulnStore(pool)
    original = sc.records["DEBIAN-CVE-2099-0001"]
    withdrawn = dict(original, modified="2024-07-01T00:00:00Z", withdrawn="2024-07-01T00:00:00Z")
    result = await import_osv(pool, scenario.write_tree(tmp_path / "w", {"w": withdrawn}))
    assert (result.updated, result.withdrawn) == (1, 1)
    keys = set(by_key(await store.match(sc.packages)))
    assert ("DEBIAN-CVE-2099-0001", "libc6") not in keys
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM vuln_affected WHERE record_id = 'DEBIAN-CVE-2099-0001'"
            )
            == 0
        )
    # the old, not-withdrawn copy arriving again does not bring the advisory back
    await import_osv(pool, scenario.write_tree(tmp_path / "old", {"o": original}))
    assert ("DEBIAN-CVE-2099-0001", "libc6") not in set(by_key(await store.match(sc.packages)))
    counts = await store.counts()
    assert counts["withdrawn"] == 2 and counts["live"] == 6


async def test_zip_export_gives_the_same_findings(
    pool: asyncpg.Pool, machine_scenario: scenario.Scenario, tmp_path: Path
) -> None:
    sc = machine_scenario
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for rid, data in sc.records.items():
            zf.writestr(f"{rid}.json", json.dumps(data))
    summary = await import_osv(pool, archive)
    assert (summary.seen, summary.inserted, summary.rejected) == (8, 8, 0)
    assert_scenario_findings(await VulnStore(pool).match(sc.packages), sc)


async def test_empty_store_reports_empty_fingerprint(pool: asyncpg.Pool) -> None:
    store = VulnStore(pool)
    current = await store.fingerprint()
    assert (current.digest, current.changed_at, current.records) == (EMPTY, None, 0)
    assert await store.match([]) == []
