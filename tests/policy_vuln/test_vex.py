"""VEX: CSAF 2.0 and OpenVEX statements land on the findings they name, and only those."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policy.packages import Package, VulnFinding
from policy.vuln.errors import VexFormatError
from policy.vuln.vex import apply_vex, load_vex, parse_vex

LIBSSL = Package(
    ecosystem="Debian",
    name="libssl3",
    version="3.0.11-1~deb12u2",
    purl="pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
    release="12",
    source_name="openssl",
)
CURL = Package("Debian", "curl", "7.88.1-10+deb12u5", "pkg:deb/debian/curl@7.88.1-10+deb12u5", "12")


def finding(pkg: Package, vid: str = "DEBIAN-CVE-2024-0001", *aliases: str) -> VulnFinding:
    return VulnFinding(id=vid, package=pkg, severity="high", aliases=aliases or ("CVE-2024-0001",))


def openvex(*statements: dict[str, Any], stamp: str = "2024-05-01T00:00:00Z") -> bytes:
    return json.dumps(
        {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://zoll.test/vex/1",
            "author": "Zoll tests",
            "timestamp": stamp,
            "version": 1,
            "statements": list(statements),
        }
    ).encode()


def test_openvex_by_purl_with_subcomponents_and_versions() -> None:
    doc = parse_vex(
        openvex(
            {
                "vulnerability": {"name": "CVE-2024-0001"},
                "products": [
                    {
                        "@id": "pkg:oci/app@sha256:abc",
                        "subcomponents": [{"@id": "pkg:deb/debian/libssl3@3.0.11-1~deb12u2"}],
                    }
                ],
                "status": "not_affected",
                "justification": "vulnerable_code_not_present",
            },
            {
                "vulnerability": {"name": "CVE-2024-0001"},
                "products": [{"@id": "pkg:deb/debian/curl@1.0"}],  # another version
                "status": "not_affected",
                "justification": "component_not_present",
            },
        )
    )
    assert doc.format == "openvex" and len(doc.statements) == 2
    ssl, curl = apply_vex([finding(LIBSSL), finding(CURL)], doc.statements)
    assert (ssl.vex_status, ssl.vex_justification, ssl.suppressed) == (
        "not_affected",
        "vulnerable_code_not_present",
        True,
    )
    assert curl.vex_status is None and not curl.suppressed


def test_source_package_purl_and_latest_statement_wins() -> None:
    early = parse_vex(
        openvex(
            {
                "vulnerability": "DEBIAN-CVE-2024-0001",
                "products": ["pkg:deb/debian/openssl"],
                "status": "under_investigation",
                "timestamp": "2024-04-01T00:00:00Z",
            },
            {
                "vulnerability": "DEBIAN-CVE-2024-0001",
                "products": ["pkg:deb/debian/openssl"],
                "status": "affected",
                "timestamp": "2024-06-01T00:00:00Z",
            },
        )
    )
    (result,) = apply_vex([finding(LIBSSL)], early.statements)
    assert result.vex_status == "affected" and not result.suppressed


def csaf(status: dict[str, list[str]], **vuln: Any) -> bytes:
    return json.dumps(
        {
            "document": {
                "category": "csaf_vex",
                "csaf_version": "2.0",
                "tracking": {"id": "T-1", "current_release_date": "2024-05-01T00:00:00Z"},
            },
            "product_tree": {
                "full_product_names": [
                    {"product_id": "IMG", "name": "image"},
                    {
                        "product_id": "SSL",
                        "name": "libssl3",
                        "product_identification_helper": {
                            "purl": "pkg:deb/debian/libssl3?distro=debian-12"
                        },
                    },
                    {
                        "product_id": "CURL",
                        "name": "curl",
                        "product_identification_helper": {
                            "cpe": "cpe:2.3:a:haxx:curl:7.88.1-10+deb12u5:*:*:*:*:*:*:*"
                        },
                    },
                ],
                "relationships": [
                    {
                        "category": "default_component_of",
                        "product_reference": "SSL",
                        "relates_to_product_reference": "IMG",
                        "full_product_name": {"product_id": "IMG:SSL", "name": "libssl3 in image"},
                    }
                ],
                "product_groups": [{"group_id": "G", "product_ids": ["IMG:SSL", "CURL"]}],
            },
            "vulnerabilities": [{"cve": "CVE-2024-0001", "product_status": status, **vuln}],
        }
    ).encode()


def test_csaf_relationships_groups_flags_and_cpe() -> None:
    doc = parse_vex(
        csaf(
            {"known_not_affected": ["IMG:SSL", "CURL"]},
            flags=[{"label": "inline_mitigations_already_exist", "group_ids": ["G"]}],
        )
    )
    assert (doc.id, doc.format) == ("T-1", "csaf")
    ssl, curl = apply_vex([finding(LIBSSL), finding(CURL)], doc.statements)
    assert ssl.vex_justification == "inline_mitigations_already_exist" and ssl.suppressed
    assert curl.vex_status == "not_affected"  # matched by CPE product and version

    fixed = parse_vex(csaf({"fixed": ["SSL"], "known_affected": ["CURL"]}))
    ssl, curl = apply_vex([finding(LIBSSL), finding(CURL)], fixed.statements)
    assert (ssl.vex_status, ssl.suppressed) == ("fixed", True)
    assert (curl.vex_status, curl.suppressed) == ("affected", False)


def test_qualifier_mismatch_does_not_match() -> None:
    doc = parse_vex(
        openvex(
            {
                "vulnerability": "CVE-2024-0001",
                "products": ["pkg:deb/debian/libssl3?distro=debian-11"],
                "status": "not_affected",
            }
        )
    )
    assert apply_vex([finding(LIBSSL)], doc.statements)[0].vex_status is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be an object"),
        (b'{"hello": 1}', "neither an OpenVEX"),
        (openvex({"vulnerability": "CVE-1", "products": [], "status": "maybe"}), "maybe"),
        (openvex({"products": [], "status": "fixed"}), "vulnerability"),
        (csaf({"fixed": ["SSL"]}, cve=None), "neither cve nor ids"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_documents_raise_clear_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(VexFormatError) as info:
        parse_vex(raw)
    assert reason in str(info.value)


def test_load_vex_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("nope")
    with pytest.raises(VexFormatError, match=r"bad\.json"):
        load_vex(bad)
    with pytest.raises(VexFormatError, match="unreadable"):
        load_vex(tmp_path / "missing.json")
