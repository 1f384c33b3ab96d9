"""Alpine (and Wolfi) packages from the apk installed database."""

from __future__ import annotations

from dataclasses import dataclass

from policy.analyzer.model import OsRelease
from policy.packages import Package
from policy.sbom.osrelease import osv_release
from policy.sbom.purl import purl


@dataclass(frozen=True, slots=True)
class ApkRecord:
    name: str
    version: str
    arch: str
    origin: str | None
    license: str | None


def parse_installed(data: bytes) -> list[ApkRecord]:
    """Records of `lib/apk/db/installed`: one blank-line separated block per package."""
    out: list[ApkRecord] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if fields.get("P") and fields.get("V"):
            out.append(
                ApkRecord(
                    fields["P"], fields["V"], fields.get("A", ""), fields.get("o"), fields.get("L")
                )
            )
        fields.clear()

    for line in data.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            flush()
            continue
        if len(line) > 1 and line[1] == ":" and line[0] in "PVAoL":
            fields.setdefault(line[0], line[2:].strip())
    flush()
    return out


def to_packages(records: list[ApkRecord], os: OsRelease | None, location: str) -> list[Package]:
    ecosystem, release = osv_release(os)
    if ecosystem not in ("Alpine", "Wolfi", "Chainguard"):
        ecosystem = "Alpine"
    vendor = os.id if os is not None else "alpine"
    distro = f"{os.id}-{os.version_id}" if os is not None and os.version_id else ""
    return [
        Package(
            ecosystem=ecosystem,
            name=r.name,
            version=r.version,
            purl=purl(
                "apk",
                r.name,
                r.version,
                namespace=vendor,
                qualifiers={"arch": r.arch, "distro": distro},
            ),
            release=release,
            source_name=r.origin if r.origin and r.origin != r.name else None,
            locations=(location,),
            licenses=(r.license,) if r.license else (),
        )
        for r in records
    ]
