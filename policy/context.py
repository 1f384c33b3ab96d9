"""What the criteria need to know beyond the image bytes, filled in by the registry.

Every field is optional: `None` means "unknown", and the criteria that depend on it
are then not applicable (with that reason) instead of failing or passing by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from registry.oci.digest import Digest
from registry.oci.reader import ContentNotFound, ContentReader

PREDICATE_ANNOTATION: Final = "dev.sigstore.bundle.predicateType"


@dataclass(frozen=True, slots=True)
class BaseImage:
    """A base image as provenance names it; `digest` None when named by tag only."""

    name: str
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class ProvenanceSummary:
    """The parts of verified build provenance the criteria judge."""

    builder_id: str | None = None
    source_uri: str | None = None
    base_images: tuple[BaseImage, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageContext:
    """Tags, attached artifacts and verification results for one image digest."""

    repository: str | None = None
    tags: tuple[str, ...] | None = None
    """Tags pointing at this digest; None when unknown."""
    attestation_types: tuple[str, ...] | None = None
    """Predicate types of verified attestations and artifact types of referrers."""
    provenance: ProvenanceSummary | None = None
    signature_verified: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "tags": None if self.tags is None else list(self.tags),
            "attestation_types": None
            if self.attestation_types is None
            else list(self.attestation_types),
            "provenance": None
            if self.provenance is None
            else {
                "builder_id": self.provenance.builder_id,
                "source_uri": self.provenance.source_uri,
                "base_images": [
                    {"name": b.name, "digest": b.digest} for b in self.provenance.base_images
                ],
            },
            "signature_verified": self.signature_verified,
        }


async def context_from_reader(
    reader: ContentReader, digest: Digest, repository: str | None = None
) -> ImageContext:
    """Tags and referrer types as a plain reader sees them (no signature verification)."""
    tags = []
    for tag in await reader.tags():
        try:
            fetched = await reader.get_manifest(tag)
        except ContentNotFound:
            continue
        if fetched.digest == digest:
            tags.append(tag)
    kinds: set[str] = set()
    for desc in await reader.referrers(digest):
        if desc.artifact_type:
            kinds.add(desc.artifact_type)
        if PREDICATE_ANNOTATION in desc.annotations:
            kinds.add(desc.annotations[PREDICATE_ANNOTATION])
    return ImageContext(repository, tuple(sorted(tags)), tuple(sorted(kinds)))
