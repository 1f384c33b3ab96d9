"""Hostile exports: broken JSON, oversized records, zip bombs — clear errors, bounded memory."""

from __future__ import annotations

import json
import os
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from policy.vuln import ArchiveLimitError, Limits, SourceError, VulnStore, import_osv
from policy.vuln.source import Record, Rejected, iter_records

MiB = 1024 * 1024
GOOD = {
    "id": "GHSA-good-0001",
    "modified": "2024-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "npm", "name": "left-pad"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.3.0"}]}],
        }
    ],
}


@contextmanager
def peak_memory() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def items(path: Path, limits: Limits | None = None) -> tuple[list[Record], list[Rejected]]:
    records, rejected = [], []
    for item in iter_records(path, limits):
        (records if isinstance(item, Record) else rejected).append(item)  # type: ignore[arg-type]
    return records, rejected


def test_broken_records_are_rejected_with_reasons_and_the_rest_survives(tmp_path: Path) -> None:
    (tmp_path / "a-good.json").write_text(json.dumps(GOOD))
    (tmp_path / "b-truncated.json").write_text('{"id": "X", "modified": ')
    (tmp_path / "c-deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / "d-nul.json").write_text(json.dumps(dict(GOOD, id="NUL", summary="a\u0000b")))
    (tmp_path / "e-surrogate.json").write_text(
        '{"id": "S", "modified": "2024-01-01T00:00:00Z", "summary": "\\ud800"}'
    )
    (tmp_path / "f-list.json").write_text(json.dumps([dict(GOOD, id="L1"), dict(GOOD, id="L2"), 7]))
    (tmp_path / "g-string.json").write_text('"just a string"')
    (tmp_path / "ignored.txt").write_text("not an export file")
    records, rejected = items(tmp_path)
    assert [r.advisory.id for r in records] == ["GHSA-good-0001", "L1", "L2"]
    reasons = {r.source: r.reason for r in rejected}
    assert reasons["b-truncated.json"].startswith("invalid JSON")
    assert reasons["c-deep.json"] == "invalid JSON: nesting too deep"
    assert "NUL" in reasons["d-nul.json (NUL)"]
    assert "surrogate" in reasons["e-surrogate.json (S)"]
    assert "must be an object" in reasons["f-list.json[2]"]
    assert "must be an object" in reasons["g-string.json"]


def test_oversized_record_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = dict(GOOD, details="x" * (40 * MiB))
    (tmp_path / "huge.json").write_text(json.dumps(huge))
    (tmp_path / "ok.json").write_text(json.dumps(GOOD))
    with peak_memory() as peak:
        records, rejected = items(tmp_path)
        assert peak() < 4 * MiB
    assert [r.advisory.id for r in records] == ["GHSA-good-0001"]
    assert rejected[0].source == "huge.json"
    assert "exceeds" in rejected[0].reason


def test_oversized_zip_member_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.json", json.dumps(dict(GOOD, details=os.urandom(3 * MiB).hex())))
        zf.writestr("ok.json", json.dumps(GOOD))
    with peak_memory() as peak:
        records, rejected = items(archive, Limits(max_record_bytes=1 * MiB))
        assert peak() < 4 * MiB
    assert [r.advisory.id for r in records] == ["GHSA-good-0001"]
    assert rejected[0].source == "big.zip:big.json"


def write_bomb(bomb: Path) -> None:
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("a.json", json.dumps(GOOD))
        with zf.open("bomb.json", "w", force_zip64=True) as member:
            chunk = b" " * MiB
            for _ in range(300):
                member.write(chunk)


def test_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    bomb = tmp_path / "all.zip"
    write_bomb(bomb)
    assert bomb.stat().st_size < 2 * MiB
    with peak_memory() as peak, pytest.raises(ArchiveLimitError, match="zip bomb"):
        items(bomb)
    assert peak() < 4 * MiB


def test_total_size_and_entry_limits(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(20):
            zf.writestr(f"{i}.json", json.dumps(dict(GOOD, id=f"R{i}")))
    with pytest.raises(ArchiveLimitError, match="uncompressed bytes"):
        items(archive, Limits(max_total_bytes=1000))
    with pytest.raises(ArchiveLimitError, match="more than 5 files"):
        items(archive, Limits(max_entries=5))


def test_paths_that_are_not_exports(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        items(tmp_path / "missing")
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(SourceError, match="neither"):
        items(fake)


async def test_store_import_counts_rejects_and_keeps_good_records(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "no-modified.json").write_text(json.dumps({"id": "X"}))
    summary = await import_osv(pool, tmp_path)
    assert (summary.seen, summary.inserted, summary.rejected) == (3, 1, 2)
    assert {r.source for r in summary.rejected_examples} == {"bad.json", "no-modified.json (X)"}
    assert (await VulnStore(pool).counts())["live"] == 1
    with pytest.raises(SourceError):
        await import_osv(pool, tmp_path / "absent.zip")


async def test_zip_bomb_import_leaves_the_store_untouched(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    bomb = tmp_path / "all.zip"
    write_bomb(bomb)
    store = VulnStore(pool)
    before = await store.fingerprint()
    with pytest.raises(ArchiveLimitError):
        await import_osv(pool, bomb)
    assert (await store.counts())["live"] == 0
    assert await store.fingerprint() == before
    (run,) = await store.recent_imports()
    assert run["finished_at"] is not None
    assert "ArchiveLimitError" in run["error"] and "zip bomb" in run["error"]
