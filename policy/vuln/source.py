"""Read OSV exports record by record: a directory tree, a zip (`all.zip`) or one file.

Memory stays bounded by the largest single record, whatever the export's size:
files are read one at a time, zip members are decompressed one at a time and never
past `max_record_bytes`, and the uncompressed total and compression ratio are capped
so a zip bomb is refused with `ArchiveLimitError` instead of filling the disk or RAM.
A bad record becomes a `Rejected` item with a reason; the rest of the export goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.vuln.errors import ArchiveLimitError, OsvFormatError, SourceError
from policy.vuln.osv import Advisory, parse_advisory

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_record_bytes: int = 16 * MiB
    max_total_bytes: int = 32 * 1024 * MiB
    max_entries: int = 5_000_000
    max_ratio: int = 200
    """Largest uncompressed/compressed ratio for a zip member over 1 MiB (JSON: ~5-20)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A valid OSV record with its canonical JSON text and that text's SHA-256."""

    source: str
    advisory: Advisory
    canonical: str
    content_hash: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    source: str
    reason: str


Item = Record | Rejected


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _decode(source: str, raw: bytes) -> Iterator[Item]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        reason = "nesting too deep" if isinstance(exc, RecursionError) else str(exc)
        yield Rejected(source, f"invalid JSON: {reason}")
        return
    records = data if isinstance(data, list) else [data]
    for i, entry in enumerate(records):
        where = f"{source}[{i}]" if isinstance(data, list) else source
        try:
            advisory = parse_advisory(entry, where)
            text = canonical_json(entry)
        except OsvFormatError as exc:
            yield Rejected(exc.source, exc.reason)
            continue
        except RecursionError:
            yield Rejected(where, "nesting too deep")
            continue
        if "\\u0000" in text:
            yield Rejected(f"{where} ({advisory.id})", "contains a NUL character (\\u0000)")
            continue
        try:
            digest = hashlib.sha256(text.encode()).digest()
        except UnicodeEncodeError:
            yield Rejected(f"{where} ({advisory.id})", "contains an unpaired UTF-16 surrogate")
            continue
        yield Record(where, advisory, text, digest)


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.entries = 0

    def spend(self, size: int, source: str) -> None:
        self.total += size
        self.entries += 1
        if self.total > self.limits.max_total_bytes:
            raise ArchiveLimitError(
                f"{source}: export exceeds {self.limits.max_total_bytes} uncompressed bytes"
            )
        if self.entries > self.limits.max_entries:
            raise ArchiveLimitError(
                f"{source}: export has more than {self.limits.max_entries} files"
            )


def _iter_zip(path: Path, budget: _Budget) -> Iterator[Item]:
    limits = budget.limits
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{path}: not a readable zip archive ({exc})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith(".json")]
        declared = sum(m.file_size for m in members)
        if budget.total + declared > limits.max_total_bytes:
            raise ArchiveLimitError(
                f"{path}: declares {declared} uncompressed bytes, limit {limits.max_total_bytes}"
            )
        if budget.entries + len(members) > limits.max_entries:
            raise ArchiveLimitError(f"{path}: export has more than {limits.max_entries} files")
        for member in members:  # refuse a bomb before importing anything from the archive
            source = f"{path.name}:{member.filename}"
            if member.file_size > MiB and member.file_size > limits.max_ratio * max(
                member.compress_size, 1
            ):
                ratio = member.file_size // max(member.compress_size, 1)
                raise ArchiveLimitError(
                    f"{source}: compression ratio {ratio} exceeds {limits.max_ratio} (zip bomb?)"
                )
        for member in members:
            source = f"{path.name}:{member.filename}"
            if member.file_size > limits.max_record_bytes:
                budget.spend(0, source)
                yield Rejected(source, f"record exceeds {limits.max_record_bytes} bytes")
                continue
            try:
                with archive.open(member) as stream:
                    raw = stream.read(member.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, RuntimeError, OSError, EOFError) as exc:
                budget.spend(0, source)
                yield Rejected(source, f"unreadable zip member: {exc}")
                continue
            budget.spend(len(raw), source)
            if len(raw) > member.file_size:
                yield Rejected(source, "zip member is larger than its header declares")
                continue
            yield from _decode(source, raw)


def _iter_file(path: Path, budget: _Budget, display: str) -> Iterator[Item]:
    limits = budget.limits
    try:
        size = path.stat().st_size
        if size > limits.max_record_bytes:
            budget.spend(0, display)
            yield Rejected(display, f"record exceeds {limits.max_record_bytes} bytes")
            return
        with path.open("rb") as handle:  # read what stat saw, +1 to notice growth
            raw = handle.read(size + 1)
    except OSError as exc:
        yield Rejected(display, f"unreadable: {exc.strerror or exc}")
        return
    budget.spend(len(raw), display)
    if len(raw) > limits.max_record_bytes:
        yield Rejected(display, f"record exceeds {limits.max_record_bytes} bytes")
        return
    yield from _decode(display, raw)


def _iter_dir(root: Path, budget: _Budget) -> Iterator[Item]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink():
                continue
            display = str(path.relative_to(root))
            if name.endswith(".json"):
                yield from _iter_file(path, budget, display)
            elif name.endswith(".zip"):
                yield from _iter_zip(path, budget)


def iter_records(
    path: str | os.PathLike[str], limits: Limits | None = None
) -> Generator[Item, None, None]:
    """Every record of an export, in a stable order, one at a time."""
    root = Path(path)
    budget = _Budget(limits or Limits())
    if root.is_dir():
        yield from _iter_dir(root, budget)
    elif root.is_file() and zipfile.is_zipfile(root):
        yield from _iter_zip(root, budget)
    elif root.is_file() and root.suffix == ".json":
        yield from _iter_file(root, budget, root.name)
    elif root.exists():
        raise SourceError(f"{root}: neither a directory, a zip archive nor a .json file")
    else:
        raise SourceError(f"{root}: no such file or directory")


def count_entries(path: str | os.PathLike[str]) -> int | None:
    """How many files an export holds (for progress bars); None if unknown."""
    root = Path(path)
    try:
        if root.is_file() and zipfile.is_zipfile(root):
            with zipfile.ZipFile(root) as archive:
                return sum(1 for m in archive.infolist() if m.filename.endswith(".json"))
        if root.is_dir():
            return sum(
                sum(1 for f in files if f.endswith(".json")) for _, _, files in os.walk(root)
            )
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def _take(iterator: Iterator[Item], n: int) -> list[Item]:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out


async def batches(
    path: str | os.PathLike[str], limits: Limits | None = None, size: int = 500
) -> AsyncIterator[list[Item]]:
    """`iter_records` in batches, read and parsed in a worker thread."""
    iterator = iter_records(path, limits)
    try:
        while True:
            batch = await asyncio.to_thread(_take, iterator, size)
            if not batch:
                return
            yield batch
    finally:
        await asyncio.to_thread(iterator.close)
