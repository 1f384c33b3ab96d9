"""Which manifests are runnable images (judged, and gated by admission) and which are
artifacts about them (signatures, attestations, SBOMs: stored and served, never gated)."""

from __future__ import annotations

from typing import Literal

from registry.oci import mediatypes as mt
from registry.oci.manifest import Manifest

Kind = Literal["image", "index", "artifact"]


def classify(manifest: Manifest) -> Kind:
    if manifest.subject is not None:
        return "artifact"
    if manifest.is_index:
        if manifest.artifact_type or not manifest.manifests:
            return "artifact"
        children_are_images = all(
            d.media_type in mt.IMAGE_MANIFESTS and not d.artifact_type for d in manifest.manifests
        )
        return "index" if children_are_images else "artifact"
    config = manifest.config
    if config is None or config.media_type not in mt.IMAGE_CONFIGS:
        return "artifact"
    if manifest.artifact_type and manifest.artifact_type not in mt.IMAGE_CONFIGS:
        return "artifact"
    if not all(layer.media_type in mt.IMAGE_LAYERS for layer in manifest.layers):
        return "artifact"  # cosign .sig/.att manifests use an image config with other layers
    return "image"
