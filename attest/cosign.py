"""Cosign's storage formats and how to find them for an image digest.

Two layouts exist in the wild and both are discovered:
- the legacy tag scheme: `sha256-<hex>.sig` (simple-signing payload layers with the
  signature, certificate, chain and Rekor bundle as layer annotations), `.att` (DSSE
  envelope layers) and `.sbom` (unsigned SBOM attachments);
- OCI 1.1 referrers (manifests whose `subject` is the image): sigstore bundles
  (`application/vnd.dev.sigstore.bundle.v0.3+json` and v0.1/v0.2), and DSSE attestation
  layers with the same annotations as `.att`. Registries without the referrers API are
  covered by the referrers tag scheme (`sha256-<hex>` holding an index).

Specs: sigstore/cosign `specs/SIGNATURE_SPEC.md`, `ATTESTATION_SPEC.md`, `BUNDLE_SPEC.md`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from attest.results import Reason, VerificationFailure
from attest.safejson import MAX_DOCUMENT_BYTES, loads_object
from registry.oci import mediatypes as mt
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader

SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION: Final = "dev.sigstore.cosign/chain"
REKOR_BUNDLE_ANNOTATION: Final = "dev.sigstore.cosign/bundle"
TIMESTAMP_ANNOTATION: Final = "dev.sigstore.cosign/rfc3161timestamp"
PREDICATE_TYPE_ANNOTATION: Final = "predicateType"
BUNDLE_CONTENT_ANNOTATION: Final = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION: Final = "dev.sigstore.bundle.predicateType"
SIMPLE_SIGNING_TYPE: Final = "cosign container image signature"
BUNDLE_MEDIA_TYPES: Final = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "v0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "v0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "v0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "v0.3",
}


def is_bundle_media_type(media_type: str | None) -> bool:
    return media_type is not None and media_type.replace(" ", "") in BUNDLE_MEDIA_TYPES


MAX_LAYERS: Final = 256
"""More signature layers than this in one manifest is treated as an attack."""

Kind = Literal["signature", "attestation", "sbom", "bundle", "other"]
TAG_SUFFIXES: Final[dict[str, Kind]] = {
    ".sig": "signature",
    ".att": "attestation",
    ".sbom": "sbom",
}


def attached_tag(subject: Digest, suffix: str = "") -> str:
    """`sha256:abc…` → `sha256-abc….sig` (cosign) or `sha256-abc…` (referrers tag scheme)."""
    return f"{subject.algorithm}-{subject.encoded}{suffix}"


@dataclass(frozen=True)
class Attached:
    """A manifest attached to an image: what it is, where it was found."""

    scheme: Literal["tag", "referrers"]
    kind: Kind
    digest: Digest
    media_type: str
    size: int
    artifact_type: str | None = None
    tag: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scheme": self.scheme,
            "kind": self.kind,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.tag:
            out["tag"] = self.tag
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def _referrer_kind(artifact_type: str | None) -> Kind:
    if is_bundle_media_type(artifact_type):
        return "bundle"
    if artifact_type in (mt.IN_TOTO, mt.DSSE_ENVELOPE):
        return "attestation"
    if artifact_type == mt.COSIGN_SIMPLESIGNING:
        return "signature"
    return "other"


async def _referrers(reader: ContentReader, subject: Digest) -> list[Descriptor]:
    """Referrers from the API and from the referrers tag scheme (registries without the
    API), asked at the same time."""
    api, scheme = await asyncio.gather(
        _referrers_api(reader, subject), _referrers_tag(reader, subject)
    )
    found: dict[Digest, Descriptor] = {}
    for desc in [*api, *scheme]:
        found.setdefault(desc.digest, desc)
    return sorted(found.values(), key=lambda d: str(d.digest))


async def _referrers_api(reader: ContentReader, subject: Digest) -> list[Descriptor]:
    try:
        return list(await reader.referrers(subject))
    except (ContentNotFound, ManifestError, ContentCorrupt):
        return []


async def _referrers_tag(reader: ContentReader, subject: Digest) -> list[Descriptor]:
    try:
        index = await reader.get_manifest(attached_tag(subject))
        parsed = parse_manifest(index.raw, index.media_type)
    except (ContentNotFound, ContentCorrupt, ManifestError):
        return []
    return list(parsed.manifests) if parsed.is_index else []


async def discover(reader: ContentReader, subject: Digest) -> list[Attached]:
    """Every signature, attestation, SBOM and bundle attached to `subject`, both layouts.

    The mirror copies exactly these along with an image; verification reads them.
    """
    out: list[Attached] = []
    listed, referrers = await asyncio.gather(reader.tags(), _referrers(reader, subject))
    tags = set(listed)
    for suffix, kind in TAG_SUFFIXES.items():
        tag = attached_tag(subject, suffix)
        if tag not in tags:
            continue
        try:
            fetched = await reader.get_manifest(tag)
        except (ContentNotFound, ContentCorrupt):
            continue
        out.append(
            Attached("tag", kind, fetched.digest, fetched.media_type, len(fetched.raw), tag=tag)
        )
    for desc in referrers:
        out.append(
            Attached(
                "referrers",
                _referrer_kind(desc.artifact_type),
                desc.digest,
                desc.media_type,
                desc.size,
                artifact_type=desc.artifact_type,
                annotations=dict(desc.annotations),
            )
        )
    return out


@dataclass(frozen=True)
class Layer:
    """One signature/attestation layer read from an attached manifest."""

    evidence_id: str
    attached: Attached
    descriptor: Descriptor | None
    content: bytes = b""
    problem: VerificationFailure | None = None


async def read_layers(
    reader: ContentReader, attached: Attached, max_bytes: int = MAX_DOCUMENT_BYTES
) -> list[Layer]:
    """The layers of an attached manifest, each read whole within `max_bytes`.

    Problems (missing or oversized blobs, a manifest that is not one) become a `Layer`
    with `problem` set, so one bad signature never hides the others.
    """
    base = f"{attached.scheme}:{attached.digest}"
    try:
        fetched = await reader.get_manifest(str(attached.digest))
        manifest = parse_manifest(fetched.raw, fetched.media_type)
    except (ContentNotFound, ContentCorrupt, ManifestError) as exc:
        reason = Reason.CONTENT_MISSING if isinstance(exc, ContentNotFound) else Reason.MALFORMED
        return [Layer(base, attached, None, problem=VerificationFailure(reason, str(exc)))]
    if manifest.is_index:
        failure = VerificationFailure(Reason.UNSUPPORTED_MEDIA_TYPE, "attachment is an index")
        return [Layer(base, attached, None, problem=failure)]
    if len(manifest.layers) > MAX_LAYERS:
        failure = VerificationFailure(
            Reason.TOO_LARGE, f"attachment has {len(manifest.layers)} layers"
        )
        return [Layer(base, attached, None, problem=failure)]
    layers = []
    for i, desc in enumerate(manifest.layers):
        evidence_id = f"{base}/layers[{i}]"
        if desc.size > max_bytes:
            failure = VerificationFailure(
                Reason.TOO_LARGE, f"layer of {desc.size} bytes exceeds the {max_bytes} allowed"
            )
            layers.append(Layer(evidence_id, attached, desc, problem=failure))
            continue
        try:
            content = await reader.read_blob(desc.digest, max_bytes)
        except ContentNotFound as exc:
            failure = VerificationFailure(Reason.CONTENT_MISSING, str(exc))
            layers.append(Layer(evidence_id, attached, desc, problem=failure))
            continue
        except ContentCorrupt as exc:
            failure = VerificationFailure(Reason.CONTENT_CORRUPT, str(exc))
            layers.append(Layer(evidence_id, attached, desc, problem=failure))
            continue
        layers.append(Layer(evidence_id, attached, desc, content))
    return layers


def check_simple_signing(payload: bytes, subject: Digest) -> None:
    """A simple-signing payload must be cosign's and name exactly `subject`."""
    try:
        body = loads_object(payload, "simple-signing payload", max_bytes=1 << 20, signed=True)
    except VerificationFailure as exc:
        reason = exc.reason if exc.reason == Reason.AMBIGUOUS_PAYLOAD else Reason.PAYLOAD_INVALID
        raise VerificationFailure(reason, exc.message) from exc
    critical = body.get("critical")
    if not isinstance(critical, dict):
        raise VerificationFailure(Reason.PAYLOAD_INVALID, "payload has no critical section")
    kind = critical.get("type")
    if not isinstance(kind, str) or kind.lower() != SIMPLE_SIGNING_TYPE:
        raise VerificationFailure(
            Reason.PAYLOAD_INVALID, f"payload type {kind!r} is not {SIMPLE_SIGNING_TYPE!r}"
        )
    image = critical.get("image")
    named = None
    if isinstance(image, dict):
        # Go decodes JSON keys case-insensitively; cosign writes "docker-manifest-digest".
        # (Case variants were refused above, so at most one key matches.)
        named = next((v for k, v in image.items() if k.lower() == "docker-manifest-digest"), None)
    if named != str(subject):
        raise VerificationFailure(
            Reason.SUBJECT_MISMATCH, f"payload signs {named!r}, not {subject}"
        )
