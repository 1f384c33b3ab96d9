"""Which manifests are runnable images (judged, and gated by admission) and which are
artifacts about them (signatures, attestations, SBOMs: stored and served, never gated)."""

from __future__ import annotations

from typing import Literal

from registry.oci import mediatypes as mt
from registry.oci.manifest import Manifest

Kind = Literal["image", "index", "artifact"]


def runnable(manifest: Manifest) -> bool:
    """Whether a container runtime would run it: an image config and only filesystem
    layers, or an index of such images. A `subject` or an `artifactType` does not make
    a runnable image an artifact (else it would bypass admission)."""
    if manifest.is_index:
        return bool(manifest.manifests) and all(
            d.media_type in mt.IMAGE_MANIFESTS and not d.artifact_type for d in manifest.manifests
        )
    config = manifest.config
    return (
        config is not None
        and config.media_type in mt.IMAGE_CONFIGS
        and all(layer.media_type in mt.IMAGE_LAYERS for layer in manifest.layers)
        # cosign .sig/.att manifests use an image config with signature layers
    )


def classify(manifest: Manifest) -> Kind:
    if not runnable(manifest):
        return "artifact"
    if manifest.is_index:
        return "artifact" if manifest.artifact_type else "index"
    return "image"
