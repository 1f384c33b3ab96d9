"""CycloneDX 1.6 JSON from an analysis, and the in-toto statement that attaches it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from policy.analyzer.model import ImageAnalysis
from policy.packages import Package

SPEC_VERSION: Final = "1.6"
PREDICATE_TYPE: Final = "https://cyclonedx.org/bom"
MEDIA_TYPE: Final = "application/vnd.cyclonedx+json"
_NAMESPACE: Final = uuid.UUID("6f0d0b8e-3c55-4d0b-9a57-7a6f6c6c5a01")
_OS_ECOSYSTEMS: Final = frozenset({"Debian", "Ubuntu", "Alpine", "Red Hat", "Rocky Linux"})


def _timestamp(analysis: ImageAnalysis, created: datetime | None) -> str:
    when = created or datetime.now(UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _licenses(package: Package) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for text in package.licenses:
        if any(op in text for op in (" AND ", " OR ", " WITH ")):
            out.append({"expression": text})
        else:
            out.append({"license": {"name": text}})
    return out


def _component(package: Package) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": package.purl,
        "name": package.name,
        "version": package.version,
        "purl": package.purl,
    }
    licenses = _licenses(package)
    if licenses:
        component["licenses"] = licenses
    properties = [{"name": "zoll:package:ecosystem", "value": package.ecosystem}]
    if package.release:
        properties.append({"name": "zoll:package:release", "value": package.release})
    if package.source_name:
        properties.append({"name": "zoll:package:source_name", "value": package.source_name})
    properties += [{"name": "zoll:location", "value": loc} for loc in package.locations]
    component["properties"] = properties
    return component


def unique_packages(packages: list[Package]) -> list[Package]:
    seen: dict[str, Package] = {}
    for p in packages:
        if p.purl in seen:
            prior = seen[p.purl]
            seen[p.purl] = Package(
                prior.ecosystem,
                prior.name,
                prior.version,
                prior.purl,
                prior.release,
                prior.source_name,
                tuple(dict.fromkeys(prior.locations + p.locations)),
                prior.licenses or p.licenses,
            )
        else:
            seen[p.purl] = p
    return sorted(seen.values(), key=lambda p: p.purl)


def build_sbom(
    analysis: ImageAnalysis, *, name: str | None = None, created: datetime | None = None
) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM of the image's final tree (serial number stable per image)."""
    digest = analysis.manifest_digest
    image_ref = f"{digest}" if name is None else f"{name}@{digest}"
    algorithm, _, encoded = digest.partition(":")
    subject: dict[str, Any] = {
        "type": "container",
        "bom-ref": image_ref,
        "name": name or digest,
        "version": digest,
        "hashes": [{"alg": "SHA-256", "content": encoded}] if algorithm == "sha256" else [],
    }
    packages = unique_packages(analysis.packages)
    components = [_component(p) for p in packages]
    os = analysis.tree.os
    if os is not None:
        components.insert(
            0,
            {
                "type": "operating-system",
                "bom-ref": f"os:{os.id}@{os.version_id}",
                "name": os.id,
                "version": os.version_id,
                "description": os.pretty_name,
            },
        )
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(_NAMESPACE, image_ref)}",
        "version": 1,
        "metadata": {
            "timestamp": _timestamp(analysis, created),
            "tools": {
                "components": [
                    {"type": "application", "name": "zoll", "version": analysis.analyzer_version}
                ]
            },
            "component": subject,
        },
        "components": components,
        "dependencies": [
            {"ref": image_ref, "dependsOn": [c["bom-ref"] for c in components]},
        ],
    }
