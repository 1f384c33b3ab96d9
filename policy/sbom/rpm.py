"""RPM packages from the rpmdb: SQLite (rpm ≥ 4.16 default) and NDB (SUSE) backends.

Both store one RPM header blob per package; the header is parsed by hand (index
entries + data store), reading only the tags an SBOM needs. The legacy Berkeley DB
`Packages` file is reported as unsupported. The SQLite path is tested against a real
CentOS 7 database; the NDB layout follows rpm's `lib/backend/ndb/rpmpkg.c` (32-byte
header, 4 KiB slot pages, blob headers) but no real NDB file was available to test it.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass
from typing import Final

from policy.analyzer.model import OsRelease
from policy.packages import Package
from policy.sbom.osrelease import osv_release
from policy.sbom.purl import purl

TAG_NAME: Final = 1000
TAG_VERSION: Final = 1001
TAG_RELEASE: Final = 1002
TAG_EPOCH: Final = 1003
TAG_VENDOR: Final = 1011
TAG_LICENSE: Final = 1014
TAG_ARCH: Final = 1022
TAG_SOURCERPM: Final = 1044
_WANTED: Final = {
    TAG_NAME,
    TAG_VERSION,
    TAG_RELEASE,
    TAG_EPOCH,
    TAG_VENDOR,
    TAG_LICENSE,
    TAG_ARCH,
    TAG_SOURCERPM,
}
_INT32: Final = 4
_STRING: Final = 6
_I18N: Final = 9
_MAX_INDEX: Final = 0x10000

NDB_MAGIC: Final = b"RpmP"
NDB_SLOT_MAGIC: Final = b"Slot"
NDB_BLOB_MAGIC: Final = b"BlbS"
NDB_PAGE: Final = 4096
NDB_MAX_PAGES: Final = 2048


class RpmError(ValueError):
    """An rpmdb or header blob is malformed."""


@dataclass(frozen=True, slots=True)
class RpmRecord:
    name: str
    version: str
    release: str
    epoch: int | None
    arch: str
    source_rpm: str | None
    license: str | None
    vendor: str | None

    @property
    def evr(self) -> str:
        base = f"{self.version}-{self.release}"
        return f"{self.epoch}:{base}" if self.epoch else base

    @property
    def source_name(self) -> str | None:
        if not self.source_rpm:
            return None
        stem = self.source_rpm.removesuffix(".rpm").rsplit(".", 1)[0]  # drop .src / .nosrc
        parts = stem.rsplit("-", 2)
        return parts[0] if len(parts) == 3 else None


def parse_header(blob: bytes) -> RpmRecord:
    """An rpmdb header blob (no lead, no magic): index count, data size, entries, data."""
    if len(blob) < 8:
        raise RpmError("header blob is too short")
    count, size = struct.unpack_from(">II", blob, 0)
    if count > _MAX_INDEX or 8 + 16 * count + size > len(blob):
        raise RpmError("header index does not fit the blob")
    store = 8 + 16 * count
    values: dict[int, str | int] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if tag not in _WANTED or offset >= size:
            continue
        at = store + offset
        if kind in (_STRING, _I18N):
            end = blob.find(b"\0", at, store + size)
            if end < 0:
                raise RpmError(f"string of tag {tag} is not terminated")
            values[tag] = blob[at:end].decode("utf-8", "replace")
        elif kind == _INT32 and n >= 1 and at + 4 <= store + size:
            values[tag] = struct.unpack_from(">i", blob, at)[0]

    def text(tag: int) -> str | None:
        value = values.get(tag)
        return value if isinstance(value, str) else None

    name, version, release = text(TAG_NAME), text(TAG_VERSION), text(TAG_RELEASE)
    if not name or version is None or release is None:
        raise RpmError("header has no name, version or release")
    epoch = values.get(TAG_EPOCH)
    return RpmRecord(
        name=name,
        version=version,
        release=release,
        epoch=epoch if isinstance(epoch, int) else None,
        arch=text(TAG_ARCH) or "",
        source_rpm=text(TAG_SOURCERPM),
        license=text(TAG_LICENSE),
        vendor=text(TAG_VENDOR),
    )


def _headers(blobs: list[bytes]) -> list[RpmRecord]:
    out = []
    for blob in blobs:
        record = parse_header(blob)
        if record.name != "gpg-pubkey":  # imported signing keys, not software
            out.append(record)
    return out


def parse_sqlite(data: bytes) -> list[RpmRecord]:
    """Packages of an `rpmdb.sqlite`, read from memory."""
    if data[18:20] == b"\x02\x02":  # WAL mode (rpm's default): in memory, read as rollback
        data = data[:18] + b"\x01\x01" + data[20:]
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(data)
        rows = conn.execute("SELECT blob FROM Packages").fetchall()
    except sqlite3.DatabaseError as exc:
        raise RpmError(f"not an rpmdb.sqlite: {exc}") from exc
    finally:
        conn.close()
    return _headers([bytes(row[0]) for row in rows])


def parse_ndb(data: bytes) -> list[RpmRecord]:
    """Packages of an NDB `Packages.db`: slot pages, then blobs with their own headers."""
    if len(data) < 16 or data[:4] != NDB_MAGIC:
        raise RpmError("not an NDB Packages.db")
    version, _generation, pages = struct.unpack_from("<III", data, 4)
    if version != 0 or pages == 0 or pages > NDB_MAX_PAGES or pages * NDB_PAGE > len(data):
        raise RpmError("unsupported NDB version or slot pages that do not fit the file")
    blobs = []
    for slot in range(pages * (NDB_PAGE // 16) - 2):  # the 32-byte header takes two slots
        at = 32 + slot * 16
        magic = data[at : at + 4]
        pkg, block, _blocks = struct.unpack_from("<III", data, at + 4)
        if magic != NDB_SLOT_MAGIC:
            raise RpmError(f"NDB slot {slot} has a bad magic")
        if pkg == 0:
            continue
        start = block * 16
        if start + 16 > len(data) or data[start : start + 4] != NDB_BLOB_MAGIC:
            raise RpmError(f"NDB blob of package {pkg} is missing")
        blob_pkg, _checksum, length = struct.unpack_from("<III", data, start + 4)
        if blob_pkg != pkg or start + 16 + length > len(data):
            raise RpmError(f"NDB blob of package {pkg} is inconsistent")
        blobs.append(data[start + 16 : start + 16 + length])
    return _headers(blobs)


def to_packages(records: list[RpmRecord], os: OsRelease | None, location: str) -> list[Package]:
    ecosystem, release = osv_release(os)
    vendor = os.id if os is not None else "rpm"
    distro = f"{os.id}-{os.version_id}" if os is not None and os.version_id else ""
    packages = []
    for r in records:
        qualifiers = {"arch": r.arch, "distro": distro, "upstream": r.source_rpm or ""}
        if r.epoch:
            qualifiers["epoch"] = str(r.epoch)
        packages.append(
            Package(
                ecosystem=ecosystem,
                name=r.name,
                version=r.evr,
                purl=purl(
                    "rpm",
                    r.name,
                    f"{r.version}-{r.release}",
                    namespace=vendor,
                    qualifiers=qualifiers,
                ),
                release=release,
                source_name=r.source_name if r.source_name != r.name else None,
                locations=(location,),
                licenses=(r.license,) if r.license else (),
            )
        )
    return packages
