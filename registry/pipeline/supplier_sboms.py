"""Find the SBOMs a supplier attached to an image, read them, and compare each with the
SBOM Zoll built: OCI referrers whose layers are SPDX or CycloneDX, cosign's `.sbom` tag,
and SBOM attestations (in-toto predicates in `.att` and sigstore bundles). Zoll's own
attestations are left out. The documents are kept with the comparison and served beside
Zoll's SBOM (`/api/v1/images/{name}@{digest}/sbom/supplier`).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

from attest.artifacts import ZOLL_KEYID_ANNOTATION
from attest.cosign import attached_tag
from policy.sbom.supplier import SbomError, compare, read_sbom
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader

MAX_SBOM_BYTES: Final = 8 << 20
MAX_SBOMS: Final = 8
SBOM_LAYERS: Final = frozenset(
    {
        "application/vnd.cyclonedx+json",
        "application/spdx+json",
        "text/spdx+json",
        "text/spdx",
    }
)
SBOM_PREDICATES: Final = ("https://cyclonedx.org/bom", "https://spdx.dev/Document")


async def _manifest_layers(reader: ContentReader, reference: str) -> list[Any]:
    try:
        fetched = await reader.get_manifest(reference)
        return list(parse_manifest(fetched.raw, fetched.media_type).layers)
    except (ContentNotFound, ContentCorrupt, ManifestError):
        return []


def _predicate(envelope: bytes) -> tuple[str, Any] | None:
    try:
        statement = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
        return str(statement["predicateType"]), statement.get("predicate")
    except (ValueError, KeyError, TypeError):
        return None


async def collect(
    reader: ContentReader, digest: Digest, zoll_sbom: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Every supplier SBOM attached to `digest`, read and compared (at most MAX_SBOMS)."""
    found: list[tuple[str, str, Any]] = []  # (where, media type, document bytes or predicate)
    for desc in await reader.referrers(digest):
        if ZOLL_KEYID_ANNOTATION in desc.annotations:
            continue
        for layer in await _manifest_layers(reader, str(desc.digest)):
            if mt.base(layer.media_type) in SBOM_LAYERS:
                found.append((f"referrer {desc.digest}", layer.media_type, layer))
    for layer in await _manifest_layers(reader, attached_tag(digest, ".sbom")):
        if mt.base(layer.media_type) in SBOM_LAYERS:
            found.append((f"cosign tag {attached_tag(digest, '.sbom')}", layer.media_type, layer))
    for layer in await _manifest_layers(reader, attached_tag(digest, ".att")):
        if ZOLL_KEYID_ANNOTATION in layer.annotations:
            continue
        if layer.annotations.get("predicateType") in SBOM_PREDICATES:
            found.append((f"attestation in {attached_tag(digest, '.att')}", "in-toto", layer))
    out = []
    for where, media_type, layer in found[:MAX_SBOMS]:
        entry: dict[str, Any] = {
            "source": where,
            "media_type": media_type,
            "blob": str(layer.digest),
        }
        try:
            data = await reader.read_blob(layer.digest, MAX_SBOM_BYTES)
            document: Any = data
            if media_type == "in-toto":
                decoded = _predicate(data)
                if decoded is None:
                    raise SbomError("the attestation is not a DSSE envelope over a statement")
                entry["predicate_type"], document = decoded
            parsed = read_sbom(document)
        except (ContentNotFound, ContentCorrupt, SbomError) as exc:
            entry["error"] = str(exc)
            out.append(entry)
            continue
        entry["format"] = parsed.format
        entry["comparison"] = compare(zoll_sbom, parsed)
        entry["document"] = document if isinstance(document, dict) else json.loads(document)
        out.append(entry)
    return out
