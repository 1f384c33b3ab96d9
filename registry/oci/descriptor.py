"""OCI content descriptors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.oci.digest import Digest, DigestError


class DescriptorError(ValueError):
    """A JSON object is not a valid descriptor."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a manifest says about a piece of content it points to."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: object, where: str) -> Descriptor:
        """Validate a descriptor object; `where` names it in error messages."""
        if not isinstance(obj, dict):
            raise DescriptorError(f"{where}: descriptor must be an object")
        media_type = obj.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise DescriptorError(f"{where}: mediaType must be a non-empty string")
        raw_digest = obj.get("digest")
        if not isinstance(raw_digest, str):
            raise DescriptorError(f"{where}: digest must be a string")
        try:
            digest = Digest.parse(raw_digest)
        except DigestError as exc:
            raise DescriptorError(f"{where}: {exc}") from exc
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DescriptorError(f"{where}: size must be a non-negative integer")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise DescriptorError(f"{where}: annotations must map strings to strings")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise DescriptorError(f"{where}: artifactType must be a string")
        platform = obj.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise DescriptorError(f"{where}: platform must be an object")
        urls = obj.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise DescriptorError(f"{where}: urls must be a list of strings")
        return cls(
            media_type, digest, size, dict(annotations), artifact_type, platform, tuple(urls)
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as the spec serialises it (optional fields omitted when empty)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.urls:
            out["urls"] = list(self.urls)
        return out
