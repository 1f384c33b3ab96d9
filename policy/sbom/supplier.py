"""Supplier SBOMs: read an SPDX or CycloneDX document someone attached to an image and
compare it with the SBOM Zoll built from the image's own bytes.

The comparison is by package identity — the package URL without qualifiers or subpath
when both sides have one, else name and version — and says what both list, what only
the supplier lists (claimed but not found in the layers: removed, vendored, or never
there) and what only Zoll found (shipped but not declared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

MAX_LISTED: Final = 50
MAX_COMPONENTS: Final = 100_000


class SbomError(ValueError):
    """The document is neither SPDX nor CycloneDX JSON."""


@dataclass(frozen=True, slots=True)
class SbomPackage:
    name: str
    version: str
    purl: str | None

    @property
    def key(self) -> str:
        if self.purl:
            return self.purl.split("?", 1)[0].split("#", 1)[0].lower()
        return f"{self.name.lower()}@{self.version}"


@dataclass(frozen=True, slots=True)
class ReadSbom:
    format: str
    """"CycloneDX 1.6", "SPDX-2.3", …"""
    packages: tuple[SbomPackage, ...]


def _cyclonedx(doc: dict[str, Any]) -> ReadSbom:
    found: list[SbomPackage] = []
    stack = list(doc.get("components") or [])
    while stack and len(found) < MAX_COMPONENTS:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        stack.extend(item.get("components") or [])
        if item.get("type") in ("operating-system", "container", "file"):
            continue
        found.append(
            SbomPackage(str(item.get("name", "")), str(item.get("version", "")), item.get("purl"))
        )
    return ReadSbom(f"CycloneDX {doc.get('specVersion', '?')}", tuple(found))


def _spdx(doc: dict[str, Any]) -> ReadSbom:
    found = []
    described = set(doc.get("documentDescribes") or [])
    for item in (doc.get("packages") or [])[:MAX_COMPONENTS]:
        if not isinstance(item, dict) or item.get("SPDXID") in described:
            continue  # the image itself, not a package in it
        purl = next(
            (
                ref.get("referenceLocator")
                for ref in item.get("externalRefs") or []
                if isinstance(ref, dict) and ref.get("referenceType") == "purl"
            ),
            None,
        )
        found.append(SbomPackage(str(item.get("name", "")), str(item.get("versionInfo", "")), purl))
    return ReadSbom(str(doc.get("spdxVersion", "SPDX")), tuple(found))


def read_sbom(data: bytes | dict[str, Any]) -> ReadSbom:
    """Parse an SBOM document (bytes of JSON, or an in-toto predicate already decoded)."""
    try:
        doc = json.loads(data) if isinstance(data, bytes) else data
    except (ValueError, UnicodeDecodeError) as exc:
        raise SbomError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SbomError("not a JSON object")
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc)
    if str(doc.get("spdxVersion", "")).startswith("SPDX-"):
        return _spdx(doc)
    raise SbomError("neither CycloneDX (bomFormat) nor SPDX (spdxVersion) JSON")


def compare(zoll_sbom: dict[str, Any] | None, supplier: ReadSbom) -> dict[str, Any]:
    """What both list, what only the supplier lists, what only Zoll found."""
    ours = {p.key: p for p in (_cyclonedx(zoll_sbom).packages if zoll_sbom else ())}
    theirs = {p.key: p for p in supplier.packages}
    only_supplier = sorted(set(theirs) - set(ours))
    only_zoll = sorted(set(ours) - set(theirs))
    return {
        "supplier_packages": len(theirs),
        "zoll_packages": len(ours),
        "in_both": len(set(ours) & set(theirs)),
        "only_supplier": only_supplier[:MAX_LISTED],
        "only_supplier_count": len(only_supplier),
        "only_zoll": only_zoll[:MAX_LISTED],
        "only_zoll_count": len(only_zoll),
    }
