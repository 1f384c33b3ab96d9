"""Java packages from JAR/WAR/EAR archives: Maven pom.properties, else the manifest."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Final

from policy.packages import Package
from policy.sbom.purl import purl

ARCHIVES: Final = (".jar", ".war", ".ear")
MAX_NESTING: Final = 2
MAX_SMALL: Final = 1 << 16
_FILENAME: Final = re.compile(r"^(?P<name>.+?)-(?P<version>\d[\w.\-+]*)\.(jar|war|ear)$")


def _properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


def _manifest(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith(" ") and key:
            out[key] += line[1:]
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
        else:
            key = ""
    return out


def _maven(group: str, artifact: str, version: str, location: str) -> Package:
    return Package(
        ecosystem="Maven",
        name=f"{group}:{artifact}",
        version=version,
        purl=purl("maven", artifact, version, namespace=group),
        locations=(location,),
    )


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes | None:
    if info.file_size > cap:
        return None
    with archive.open(info) as fh:
        data = fh.read(cap + 1)
    return data if len(data) <= cap else None


def parse_archive(data: bytes, location: str, cap: int, depth: int = 0) -> list[Package]:
    """Packages in one archive held in memory (nested archives up to `MAX_NESTING`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return []
    packages: list[Package] = []
    manifest: dict[str, str] = {}
    try:
        for info in infos:
            name = info.filename
            if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
                raw = _read(archive, info, MAX_SMALL)
                props = _properties(raw.decode("utf-8", "replace")) if raw else {}
                if props.get("groupId") and props.get("artifactId") and props.get("version"):
                    packages.append(
                        _maven(props["groupId"], props["artifactId"], props["version"], location)
                    )
            elif name == "META-INF/MANIFEST.MF":
                raw = _read(archive, info, MAX_SMALL)
                manifest = _manifest(raw.decode("utf-8", "replace")) if raw else {}
            elif depth < MAX_NESTING and name.lower().endswith(ARCHIVES):
                nested = _read(archive, info, cap)
                if nested is not None:
                    packages += parse_archive(nested, f"{location}!/{name}", cap, depth + 1)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return packages
    if any(p.locations == (location,) for p in packages):
        return packages
    version = manifest.get("Implementation-Version") or manifest.get("Bundle-Version")
    title = manifest.get("Bundle-SymbolicName", "").split(";")[0] or manifest.get(
        "Implementation-Title"
    )
    group = manifest.get("Implementation-Vendor-Id")
    if not (title and version):
        match = _FILENAME.match(location.rsplit("/", 1)[-1])
        if match:
            title, version = match["name"], match["version"]
    if title and version:
        if group:
            packages.append(_maven(group, title, version, location))
        else:
            packages.append(
                Package(
                    "Maven", title, version, purl("maven", title, version), None, None, (location,)
                )
            )
    return packages
