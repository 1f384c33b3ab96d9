"""Python distributions from `*.dist-info/METADATA` and `*.egg-info/PKG-INFO`."""

from __future__ import annotations

import re
from typing import Final

from policy.packages import Package
from policy.sbom.purl import purl

_NORMALISE: Final = re.compile(r"[-_.]+")


def _headers(data: bytes) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    key = ""
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            break
        if line[0] in " \t" and key:
            headers[key][-1] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            key = ""
            continue
        key = key.strip().lower()
        headers.setdefault(key, []).append(value.strip())
    return headers


def parse_metadata(data: bytes, location: str) -> Package | None:
    """A PyPI package from core metadata, or None without a name and version."""
    headers = _headers(data)
    name = (headers.get("name") or [""])[0]
    version = (headers.get("version") or [""])[0]
    if not name or not version:
        return None
    licenses: list[str] = []
    if headers.get("license-expression"):
        licenses.append(headers["license-expression"][0])
    elif headers.get("license") and len(headers["license"][0]) <= 80:
        licenses.append(headers["license"][0])
    normalised = _NORMALISE.sub("-", name).lower()
    return Package(
        ecosystem="PyPI",
        name=normalised,
        version=version,
        purl=purl("pypi", normalised, version),
        locations=(location,),
        licenses=tuple(licenses),
    )
