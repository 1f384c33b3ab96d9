"""An OSV export and a CSAF VEX document written for this machine's real packages.

The records name packages that are really installed here (libc6/glibc, libssl3 and
openssl/openssl, zlib1g/zlib, bash) with ranges built from their installed versions,
so the expected findings are known exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.packages import Package
from tests.policy_vuln.debian import installed_package

CRITICAL_V31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MEDIUM_V2 = "AV:N/AC:M/Au:N/C:P/I:N/A:N"  # 4.3


@dataclass(frozen=True)
class Scenario:
    packages: list[Package]
    records: dict[str, dict[str, Any]]
    glibc_fix: str

    def by_name(self, name: str) -> Package:
        return next(p for p in self.packages if p.name == name)


def record(
    rid: str,
    source: str,
    release: str,
    events: list[dict[str, str]],
    *,
    modified: str = "2024-05-01T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "schema_version": "1.6.0",
        "id": rid,
        "modified": modified,
        "aliases": [rid.removeprefix("DEBIAN-")],
        "summary": f"test advisory for {source}",
        "affected": [
            {
                "package": {"ecosystem": f"Debian:{release}", "name": source},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                **extra.pop("affected_extra", {}),
            }
        ],
        **extra,
    }


def build() -> Scenario:
    libc, libssl, openssl = (installed_package(n) for n in ("libc6", "libssl3", "openssl"))
    zlib, bash = installed_package("zlib1g"), installed_package("bash")
    release = libc.release or "12"
    glibc_fix = libc.version + "+zoll1"  # sorts just above the installed version
    records = {
        # glibc: installed version is below the fix → critical finding, fixed version given
        "DEBIAN-CVE-2099-0001": record(
            "DEBIAN-CVE-2099-0001",
            "glibc",
            release,
            [{"introduced": "0"}, {"fixed": glibc_fix}],
            severity=[{"type": "CVSS_V3", "score": CRITICAL_V31}],
        ),
        # openssl fixed long ago → no finding
        "DEBIAN-CVE-2099-0002": record(
            "DEBIAN-CVE-2099-0002", "openssl", release, [{"introduced": "0"}, {"fixed": "1.0.0-1"}]
        ),
        # openssl unfixed, Debian urgency "high" → two findings (libssl3 and openssl)
        "DEBIAN-CVE-2099-0003": record(
            "DEBIAN-CVE-2099-0003",
            "openssl",
            release,
            [{"introduced": "0"}],
            affected_extra={"ecosystem_specific": {"urgency": "high"}},
        ),
        # zlib in another Debian release only → no finding
        "DEBIAN-CVE-2099-0004": record("DEBIAN-CVE-2099-0004", "zlib", "11", [{"introduced": "0"}]),
        # zlib: last_affected is exactly the installed version → medium (CVSS v2 4.3)
        "DEBIAN-CVE-2099-0005": record(
            "DEBIAN-CVE-2099-0005",
            "zlib",
            release,
            [{"introduced": "0"}, {"last_affected": zlib.version}],
            severity=[{"type": "CVSS_V2", "score": MEDIUM_V2}],
        ),
        # glibc, withdrawn → no finding
        "DEBIAN-CVE-2099-0006": record(
            "DEBIAN-CVE-2099-0006",
            "glibc",
            release,
            [{"introduced": "0"}],
            withdrawn="2024-05-02T00:00:00Z",
        ),
        # bash with a version dpkg cannot parse → reported as undecided, not dropped
        "DEBIAN-CVE-2099-0007": record(
            "DEBIAN-CVE-2099-0007",
            "bash",
            release,
            [{"introduced": "0"}, {"fixed": "not a version"}],
        ),
        # a PyPI advisory: irrelevant to Debian packages
        "GHSA-zoll-test-0008": {
            "id": "GHSA-zoll-test-0008",
            "modified": "2024-05-01T10:00:00Z",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "zlib"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                }
            ],
            "database_specific": {"severity": "CRITICAL"},
        },
    }
    return Scenario([libc, libssl, openssl, zlib, bash], records, glibc_fix)


def write_tree(root: Path, records: dict[str, dict[str, Any]]) -> Path:
    """An export laid out as a directory tree (one record per file, nested folders)."""
    for rid, data in records.items():
        folder = root / rid.split("-")[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{rid}.json").write_text(json.dumps(data, indent=2))
    return root


def csaf_vex(package: Package, cve: str) -> dict[str, Any]:
    """A CSAF 2.0 VEX document: `package` (by purl, any version) is not affected by `cve`."""
    purl = package.purl.split("@")[0]
    return {
        "document": {
            "category": "csaf_vex",
            "csaf_version": "2.0",
            "publisher": {
                "category": "vendor",
                "name": "Zoll tests",
                "namespace": "https://zoll.test",
            },
            "title": f"{cve} does not affect {package.name}",
            "tracking": {
                "id": "ZOLL-VEX-2099-0001",
                "status": "final",
                "version": "1",
                "initial_release_date": "2024-05-03T00:00:00Z",
                "current_release_date": "2024-05-03T00:00:00Z",
                "revision_history": [
                    {"date": "2024-05-03T00:00:00Z", "number": "1", "summary": "initial"}
                ],
            },
        },
        "product_tree": {
            "branches": [
                {
                    "category": "vendor",
                    "name": "Debian",
                    "branches": [
                        {
                            "category": "product_name",
                            "name": package.name,
                            "product": {
                                "name": package.name,
                                "product_id": "CSAFPID-0001",
                                "product_identification_helper": {"purl": purl},
                            },
                        }
                    ],
                }
            ]
        },
        "vulnerabilities": [
            {
                "cve": cve,
                "notes": [{"category": "description", "text": "test"}],
                "product_status": {"known_not_affected": ["CSAFPID-0001"]},
                "flags": [
                    {
                        "label": "vulnerable_code_not_in_execute_path",
                        "product_ids": ["CSAFPID-0001"],
                    }
                ],
            }
        ],
    }
