"""Which distribution a tree is: /etc/os-release, or the distro's own release file."""

from __future__ import annotations

import shlex

from policy.analyzer.model import OsRelease


def parse_os_release(data: bytes) -> OsRelease | None:
    """Parse os-release(5); None when there is no ID."""
    values: dict[str, str] = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        values[key.strip()] = parts[0] if parts else ""
    os_id = values.get("ID", "").lower()
    if not os_id:
        return None
    return OsRelease(
        id=os_id,
        version_id=values.get("VERSION_ID", ""),
        version_codename=values.get("VERSION_CODENAME", ""),
        pretty_name=values.get("PRETTY_NAME", ""),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
    )


def osv_release(os: OsRelease | None) -> tuple[str, str | None]:
    """(OSV ecosystem, release) for a distribution's packages."""
    if os is None:
        return "Linux", None
    family = {os.id, *os.id_like}
    if os.id == "alpine":
        major_minor = ".".join(os.version_id.split(".")[:2])
        return "Alpine", f"v{major_minor}" if major_minor else None
    if os.id == "ubuntu":
        return "Ubuntu", os.version_id or None
    if os.id == "debian" or "debian" in family:
        return "Debian", os.version_id.split(".")[0] or None
    names = {
        "rhel": "Red Hat",
        "centos": "Red Hat",
        "rocky": "Rocky Linux",
        "almalinux": "AlmaLinux",
        "sles": "SUSE",
        "opensuse-leap": "openSUSE",
        "opensuse-tumbleweed": "openSUSE",
        "mariner": "Mariner",
        "azurelinux": "Azure Linux",
        "photon": "Photon OS",
        "wolfi": "Wolfi",
        "chainguard": "Chainguard",
    }
    if os.id in names:
        return names[os.id], os.version_id.split(".")[0] or None
    return os.id, os.version_id or None
