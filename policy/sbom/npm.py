"""npm packages from `node_modules/**/package.json`."""

from __future__ import annotations

import json

from policy.packages import Package
from policy.sbom.purl import purl


def parse_package_json(data: bytes, location: str) -> Package | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    license_field = doc.get("license")
    if isinstance(license_field, dict):
        license_field = license_field.get("type")
    namespace, _, short = name.rpartition("/")
    return Package(
        ecosystem="npm",
        name=name,
        version=version,
        purl=purl("npm", short, version, namespace=namespace or None),
        locations=(location,),
        licenses=(license_field,) if isinstance(license_field, str) and license_field else (),
    )


def is_package_manifest(path: str) -> bool:
    """`…/node_modules/<name>/package.json` or `…/node_modules/@scope/<name>/package.json`."""
    parts = path.split("/")
    if len(parts) < 3 or parts[-1] != "package.json":
        return False
    if parts[-3] == "node_modules":
        return not parts[-2].startswith("@")
    return len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")
