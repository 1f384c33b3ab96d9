"""SPDX 2.3 JSON from an analysis (for consumers that want SPDX)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from policy.analyzer.model import ImageAnalysis
from policy.sbom.cyclonedx import unique_packages

SPDX_VERSION: Final = "SPDX-2.3"
PREDICATE_TYPE: Final = "https://spdx.dev/Document"
MEDIA_TYPE: Final = "application/spdx+json"
_NAMESPACE: Final = uuid.UUID("0b4c1a7e-8f3d-4f0c-b3a1-52a0d9c6e7f2")
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9.\-]+")


def _spdx_id(prefix: str, value: str, used: set[str]) -> str:
    base = f"SPDXRef-{prefix}-{_ID_UNSAFE.sub('-', value).strip('-')}"[:120]
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    used.add(candidate)
    return candidate


def spdx(
    analysis: ImageAnalysis, *, name: str | None = None, created: datetime | None = None
) -> dict[str, Any]:
    """An SPDX 2.3 document: the image package CONTAINS every found package."""
    digest = analysis.manifest_digest
    image_name = name or digest
    when = (created or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    used: set[str] = set()
    image_id = _spdx_id("Image", image_name, used)
    algorithm, _, encoded = digest.partition(":")
    packages: list[dict[str, Any]] = [
        {
            "SPDXID": image_id,
            "name": image_name,
            "versionInfo": digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": algorithm.upper(), "checksumValue": encoded}],
        }
    ]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    for p in unique_packages(analysis.packages):
        pid = _spdx_id("Package", f"{p.name}-{p.version}", used)
        license_text = " AND ".join(p.licenses) if p.licenses else "NOASSERTION"
        packages.append(
            {
                "SPDXID": pid,
                "name": p.name,
                "versionInfo": p.version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "comment": f"declared license: {license_text}; found at {', '.join(p.locations)}",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": p.purl,
                    }
                ],
            }
        )
        relationships.append(
            {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": pid}
        )
    return {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"zoll-sbom-{image_name}",
        "documentNamespace": f"https://zoll.dev/spdx/{uuid.uuid5(_NAMESPACE, digest)}",
        "creationInfo": {"created": when, "creators": [f"Tool: {analysis.analyzer_version}"]},
        "packages": packages,
        "relationships": relationships,
    }
