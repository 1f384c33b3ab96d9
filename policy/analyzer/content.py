"""What the analyzer reads from file contents while the layers stream past.

Package databases, /etc/passwd, os-release and Java archives are held in memory one at
a time (up to `max_capture_bytes`) and parsed at once; executables are scanned for Go
build info and text files for secrets without being held. Parsed facts are keyed by path
and layer; `finish` keeps only those whose file is still in the final tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from policy.analyzer.limits import AnalysisLimits
from policy.analyzer.model import Finding, OsRelease, User
from policy.analyzer.secrets import MAX_SCAN_BYTES, StreamScanner, looks_binary
from policy.analyzer.tree import FileTree
from policy.packages import Package
from policy.sbom import apk, dpkg, java, npm, python, rpm
from policy.sbom.golang import BuildInfoScanner
from policy.sbom.osrelease import parse_os_release

_EXACT: Final = {
    "/etc/passwd": "passwd",
    "/etc/os-release": "os-release",
    "/usr/lib/os-release": "os-release",
    "/etc/alpine-release": "alpine-release",
    "/etc/debian_version": "debian-version",
    "/var/lib/dpkg/status": "dpkg",
    "/lib/apk/db/installed": "apk",
    "/usr/lib/apk/db/installed": "apk",
    "/var/lib/rpm/rpmdb.sqlite": "rpm-sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite": "rpm-sqlite",
    "/var/lib/rpm/Packages.db": "rpm-ndb",
    "/usr/lib/sysimage/rpm/Packages.db": "rpm-ndb",
    "/var/lib/rpm/Packages": "rpm-bdb",
}
_PYTHON_META: Final = re.compile(r"/[^/]+\.(?:dist-info/METADATA|egg-info/PKG-INFO|egg-info)$")


def capture_kind(path: str) -> str | None:
    """Which parser wants this file whole, if any."""
    kind = _EXACT.get(path)
    if kind:
        return kind
    if path.startswith("/var/lib/dpkg/status.d/") and "." not in path.rsplit("/", 1)[-1]:
        return "dpkg"
    if _PYTHON_META.search(path):
        return "python"
    if path.endswith("/package.json") and npm.is_package_manifest(path):
        return "npm"
    if path.lower().endswith(java.ARCHIVES):
        return "java"
    return None


@dataclass(slots=True)
class Fact:
    layer: int
    kind: str
    value: object


@dataclass(slots=True)
class Collected:
    """Parsed facts of the final tree."""

    users: list[User] = field(default_factory=list)
    has_passwd: bool = False
    os: OsRelease | None = None
    packages: list[Package] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


class ContentCollector:
    """Consumes file data per tar entry; one instance per image."""

    def __init__(self, limits: AnalysisLimits) -> None:
        self.limits = limits
        self.facts: dict[str, Fact] = {}
        self.secrets: list[tuple[str, int, Finding]] = []

    def consume(self, path: str, size: int, layer: int, chunks: Iterator[bytes]) -> None:
        kind = capture_kind(path)
        if kind is not None and size <= self.limits.max_capture_bytes:
            data = b"".join(chunks)
            if size <= MAX_SCAN_BYTES and not looks_binary(data[:1024]):
                self._scan(path, layer, [data])
            self._parse(path, layer, kind, data)
            return
        first = next(chunks, b"")
        if first.startswith(b"\x7fELF"):
            scanner = BuildInfoScanner()
            scanner.feed(first)
            for chunk in chunks:
                scanner.feed(chunk)
            if scanner.found:
                self.facts[path] = Fact(layer, "go", scanner.packages(path))
        elif size <= MAX_SCAN_BYTES and not looks_binary(first[:1024]):
            self._scan(path, layer, [first, *chunks])

    def _scan(self, path: str, layer: int, chunks: list[bytes]) -> None:
        scanner = StreamScanner()
        for chunk in chunks:
            scanner.feed(chunk)
        for hit in scanner.hits:
            finding = Finding(
                "secret",
                f"{hit.kind} in {path}",
                layer,
                path,
                {"kind": hit.kind, "preview": hit.preview, "fingerprint": hit.fingerprint},
            )
            self.secrets.append((path, layer, finding))

    def _parse(self, path: str, layer: int, kind: str, data: bytes) -> None:
        value: object
        try:
            if kind == "passwd":
                value = parse_passwd(data)
            elif kind == "os-release":
                value = parse_os_release(data)
            elif kind in ("alpine-release", "debian-version"):
                value = data.decode("utf-8", "replace").strip()
            elif kind == "dpkg":
                value = dpkg.parse_status(data)
            elif kind == "apk":
                value = apk.parse_installed(data)
            elif kind == "rpm-sqlite":
                value = rpm.parse_sqlite(data)
            elif kind == "rpm-ndb":
                value = rpm.parse_ndb(data)
            elif kind == "rpm-bdb":
                value = None
            elif kind == "python":
                value = python.parse_metadata(data, path)
            elif kind == "npm":
                value = npm.parse_package_json(data, path)
            else:
                value = java.parse_archive(data, path, self.limits.max_capture_bytes)
        except rpm.RpmError as exc:
            value = Finding("malformed", f"rpm database {path}: {exc}", layer, path)
        self.facts[path] = Fact(layer, kind, value)

    def finish(self, tree: FileTree) -> Collected:
        """Facts of files still present (same layer) in the final tree."""
        live: dict[str, Fact] = {}
        for path, fact in self.facts.items():
            node = tree.lookup(path, follow=False)
            if node is not None and node.kind == "file" and node.layer == fact.layer:
                live[path] = fact
        out = Collected()
        os_fact = live.get("/etc/os-release") or live.get("/usr/lib/os-release")
        if os_fact is not None and isinstance(os_fact.value, OsRelease):
            out.os = os_fact.value
        elif "/etc/alpine-release" in live:
            out.os = OsRelease("alpine", str(live["/etc/alpine-release"].value))
        elif "/etc/debian_version" in live:
            out.os = OsRelease("debian", str(live["/etc/debian_version"].value))
        for path, fact in sorted(live.items()):
            value = fact.value
            if fact.kind == "passwd" and isinstance(value, list):
                out.has_passwd = True
                out.users = value
            elif isinstance(value, Finding):
                out.findings.append(value)
            elif fact.kind == "rpm-bdb":
                out.findings.append(
                    Finding(
                        "unsupported",
                        "Berkeley DB rpmdb is not read; its packages are missing from the SBOM",
                        fact.layer,
                        path,
                    )
                )
            elif fact.kind == "dpkg" and isinstance(value, list):
                out.packages += dpkg.to_packages(value, out.os, path)
            elif fact.kind == "apk" and isinstance(value, list):
                out.packages += apk.to_packages(value, out.os, path)
            elif fact.kind in ("rpm-sqlite", "rpm-ndb") and isinstance(value, list):
                out.packages += rpm.to_packages(value, out.os, path)
            elif isinstance(value, Package):
                out.packages.append(value)
            elif fact.kind in ("java", "go") and isinstance(value, list):
                out.packages += [p for p in value if isinstance(p, Package)]
        for path, layer, finding in self.secrets:
            node = tree.lookup(path, follow=False)
            present = node is not None and node.layer == layer
            detail = {**finding.detail, "in_final_tree": "yes" if present else "no (deleted later)"}
            out.findings.append(
                Finding(finding.kind, finding.message, finding.layer, finding.path, detail)
            )
        return out


def parse_passwd(data: bytes) -> list[User]:
    users = []
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        users.append(User(fields[0], int(fields[2]), int(fields[3]), fields[5], fields[6]))
    return users
