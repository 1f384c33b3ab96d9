"""Parse and validate manifests and indexes (OCI and Docker schema 2).

Registries must not trust what a client says a manifest is; this module decides the
media type from the body and the Content-Type together and extracts everything the
registry needs to store: referenced blobs, child manifests, subject, artifact type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from registry.oci import mediatypes as mt
from registry.oci.descriptor import Descriptor, DescriptorError
from registry.oci.digest import Digest
from registry.oci.jsonlimits import depth_exceeds

MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
"""The spec's recommended limit; larger manifests are refused with 413."""
MAX_DEPTH: Final = 64


class ManifestError(ValueError):
    """The manifest is malformed; the message says what is wrong."""


class UnsupportedManifest(ManifestError):
    """Valid JSON of a manifest kind Zoll does not store (e.g. Docker schema 1)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest or index and what it references."""

    media_type: str
    digest: Digest
    raw: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def effective_artifact_type(self) -> str | None:
        """What the referrers API reports: artifactType, else the config media type."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None:
            return self.config.media_type
        return None

    def blob_references(self) -> tuple[Descriptor, ...]:
        """Blobs that must exist in the repository (config and layers without `urls`)."""
        blobs = [self.config] if self.config is not None else []
        blobs.extend(layer for layer in self.layers if not layer.urls)
        return tuple(blobs)

    def json(self) -> dict[str, Any]:
        """The body as parsed JSON (for readers that need fields we do not model)."""
        result: dict[str, Any] = json.loads(self.raw)
        return result


def _infer_media_type(body: dict[str, Any], content_type: str | None) -> str:
    declared = body.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType must be a string")
    header = mt.base(content_type) if content_type else None
    if declared:
        declared = mt.base(declared)
        if header and header in mt.MANIFESTS and header != declared:
            raise ManifestError(
                f"Content-Type {header} does not match the manifest's mediaType {declared}"
            )
        return declared
    if header and header in mt.MANIFESTS | {mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED}:
        return header
    if "manifests" in body:
        return mt.OCI_INDEX
    if "config" in body:
        return mt.OCI_MANIFEST
    if body.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1
    raise ManifestError("cannot tell the manifest type: no mediaType and no Content-Type")


def _descriptors(body: dict[str, Any], key: str, *, required: bool) -> tuple[Descriptor, ...]:
    value = body.get(key)
    if value is None:
        if required:
            raise ManifestError(f"{key} is required")
        return ()
    if not isinstance(value, list):
        raise ManifestError(f"{key} must be a list")
    try:
        return tuple(Descriptor.from_json(item, f"{key}[{i}]") for i, item in enumerate(value))
    except DescriptorError as exc:
        raise ManifestError(str(exc)) from exc


def _optional_descriptor(body: dict[str, Any], key: str) -> Descriptor | None:
    if body.get(key) is None:
        return None
    try:
        return Descriptor.from_json(body[key], key)
    except DescriptorError as exc:
        raise ManifestError(str(exc)) from exc


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Validate `raw` as a manifest; raise ManifestError with a precise reason."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ManifestError("manifest must be a JSON object")
    if depth_exceeds(body, MAX_DEPTH):
        raise ManifestError(f"manifest is nested deeper than {MAX_DEPTH} levels")
    media_type = _infer_media_type(body, content_type)
    if media_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedManifest("Docker schema 1 manifests are not supported")
    if media_type not in mt.MANIFESTS:
        raise UnsupportedManifest(f"unsupported manifest media type {media_type}")
    schema = body.get("schemaVersion")
    if schema != 2 or isinstance(schema, bool):
        raise ManifestError("schemaVersion must be 2")
    annotations = body.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ManifestError("annotations must map strings to strings")
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError("artifactType must be a string")
    subject = _optional_descriptor(body, "subject")
    digest = Digest.of(raw)
    if media_type in mt.INDEXES:
        if "config" in body or "layers" in body:
            raise ManifestError("an index must not have config or layers")
        return Manifest(
            media_type=media_type,
            digest=digest,
            raw=raw,
            manifests=_descriptors(body, "manifests", required=True),
            subject=subject,
            artifact_type=artifact_type,
            annotations=dict(annotations),
        )
    if "manifests" in body:
        raise ManifestError("an image manifest must not have manifests")
    config = _optional_descriptor(body, "config")
    if config is None:
        raise ManifestError("config is required")
    if media_type == mt.OCI_MANIFEST and config.media_type == mt.OCI_EMPTY and not artifact_type:
        raise ManifestError("artifactType is required when config is the empty descriptor")
    return Manifest(
        media_type=media_type,
        digest=digest,
        raw=raw,
        config=config,
        layers=_descriptors(body, "layers", required=media_type == mt.DOCKER_MANIFEST),
        subject=subject,
        artifact_type=artifact_type,
        annotations=dict(annotations),
    )
