"""This machine's own Debian packages, read from dpkg's status file, as `Package`s."""

from __future__ import annotations

import subprocess
from pathlib import Path

from policy.packages import Package

STATUS = Path("/var/lib/dpkg/status")


def _stanzas() -> list[dict[str, str]]:
    out = []
    for block in STATUS.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields.get("Package") and fields.get("Version"):
            out.append(fields)
    return out


def installed_versions() -> list[str]:
    """Every distinct version string dpkg records here (real-world dpkg versions)."""
    return sorted({s["Version"] for s in _stanzas()})


def debian_release() -> str:
    return Path("/etc/debian_version").read_text().strip().split(".")[0]


def installed_package(name: str) -> Package:
    """The installed binary package `name`, named the way OSV's Debian data names it."""
    release = debian_release()
    for stanza in _stanzas():
        if stanza["Package"] == name and "installed" in stanza.get("Status", ""):
            source = stanza.get("Source", "").split(" ")[0] or None
            arch = stanza.get("Architecture", "all")
            version = stanza["Version"]
            return Package(
                ecosystem="Debian",
                name=name,
                version=version,
                purl=f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-{release}",
                release=release,
                source_name=source if source != name else None,
                locations=("/var/lib/dpkg/status",),
            )
    raise LookupError(f"{name} is not installed on this machine")


def dpkg_compare(a: str, op: str, b: str) -> bool:
    """The real oracle: `dpkg --compare-versions a op b`."""
    result = subprocess.run(
        ["dpkg", "--compare-versions", a, op, b], capture_output=True, check=False
    )
    return result.returncode == 0
