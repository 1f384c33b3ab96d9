"""Debian/Ubuntu packages from the dpkg status database (and distroless status.d)."""

from __future__ import annotations

from dataclasses import dataclass

from policy.analyzer.model import OsRelease
from policy.packages import Package
from policy.sbom.osrelease import osv_release
from policy.sbom.purl import purl


@dataclass(frozen=True, slots=True)
class DpkgRecord:
    name: str
    version: str
    arch: str
    source: str | None
    source_version: str | None


def _stanzas(data: bytes) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            if current:
                stanzas.append(current)
                current, key = {}, ""
            continue
        if line[0] in " \t":
            if key:
                current[key] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            key = ""
            continue
        current[key.strip()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_status(data: bytes) -> list[DpkgRecord]:
    """Installed packages of a dpkg status file (`Status: … installed`)."""
    out = []
    for stanza in _stanzas(data):
        name, version = stanza.get("Package"), stanza.get("Version")
        if not name or not version:
            continue
        status = stanza.get("Status", "install ok installed").split()
        if status and status[-1] not in ("installed", "half-configured", "triggers-pending"):
            continue
        source, source_version = None, None
        if stanza.get("Source"):
            parts = stanza["Source"].split()
            source = parts[0]
            if len(parts) > 1:
                source_version = parts[1].strip("()")
        out.append(
            DpkgRecord(name, version, stanza.get("Architecture", ""), source, source_version)
        )
    return out


def to_packages(records: list[DpkgRecord], os: OsRelease | None, location: str) -> list[Package]:
    ecosystem, release = osv_release(os)
    if ecosystem not in ("Debian", "Ubuntu"):
        ecosystem = "Debian"
    vendor = "ubuntu" if ecosystem == "Ubuntu" else "debian"
    distro = f"{os.id}-{os.version_id}" if os is not None and os.version_id else ""
    packages = []
    for r in records:
        qualifiers = {"arch": r.arch, "distro": distro}
        if r.source and r.source != r.name:
            qualifiers["upstream"] = r.source
        packages.append(
            Package(
                ecosystem=ecosystem,
                name=r.name,
                version=r.version,
                purl=purl("deb", r.name, r.version, namespace=vendor, qualifiers=qualifiers),
                release=release,
                source_name=r.source if r.source and r.source != r.name else None,
                locations=(location,),
            )
        )
    return packages
