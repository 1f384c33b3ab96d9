"""Which manifests are runnable images and Helm charts (judged, and gated by admission),
which are artifacts about them (signatures, attestations, SBOMs: stored and served beside
their subject), and which are other artifacts the pipeline does not judge (gated in an
`enforce` namespace unless its policy lists their type: no silent exemptions)."""

from __future__ import annotations

from typing import Final, Literal

from registry.oci import mediatypes as mt
from registry.oci.digest import Digest, DigestError
from registry.oci.manifest import Manifest

Kind = Literal["image", "index", "artifact", "chart"]

ATTACHMENT_LAYERS: Final = frozenset(
    {
        mt.COSIGN_SIMPLESIGNING,
        mt.DSSE_ENVELOPE,
        mt.IN_TOTO,
        mt.SIGSTORE_BUNDLE_V01,
        mt.SIGSTORE_BUNDLE_V02,
        mt.SIGSTORE_BUNDLE_V03,
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/spdx+json",
        "text/spdx",
        "text/spdx+json",
        "text/spdx+xml",
        "application/vnd.cyclonedx",
    }
)
"""Layer media types of cosign's `.sig`/`.att`/`.sbom` manifests and of SBOM artifacts."""


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
    if runnable(manifest):
        if manifest.is_index:
            return "artifact" if manifest.artifact_type else "index"
        return "image"
    config = manifest.config
    if (
        manifest.subject is None
        and not manifest.is_index
        and config is not None
        and mt.base(config.media_type) == mt.HELM_CONFIG
    ):
        return "chart"
    return "artifact"


def artifact_type(manifest: Manifest) -> str:
    """What an artifact is, as OCI 1.1 says to tell: `artifactType`, else the config's
    media type (for an index: its artifactType, else "an index of …")."""
    if manifest.artifact_type:
        return manifest.artifact_type
    if manifest.is_index:
        kinds = sorted({d.artifact_type or d.media_type for d in manifest.manifests})
        return f"index of {', '.join(kinds) or 'nothing'}"
    if manifest.config is not None:
        return mt.base(manifest.config.media_type)
    return "unknown"


def cosign_subject(tags: list[str]) -> str | None:
    """The digest a cosign tag-scheme tag (`sha256-<hex>.sig`, `.att`, `.sbom`, or the
    referrers tag `sha256-<hex>`) is about."""
    for tag in tags:
        head, _, _suffix = tag.partition(".")
        if head.startswith("sha256-"):
            try:
                return str(Digest.parse("sha256:" + head[len("sha256-") :]))
            except DigestError:
                continue
    return None


def attachment_of(manifest: Manifest, tags: list[str]) -> str | None:
    """The subject an artifact is *about* (a signature, attestation or SBOM of an image),
    or None when it stands on its own. Cosign's tag-scheme manifests name their subject in
    the tag; content that only carries signing or SBOM layers is an attachment even when
    the tag is not known here."""
    if manifest.subject is not None:
        return str(manifest.subject.digest)
    subject = cosign_subject(tags)
    if subject is not None:
        return subject
    layers = manifest.layers
    if layers and all(mt.base(layer.media_type) in ATTACHMENT_LAYERS for layer in layers):
        return ""
    if (
        manifest.is_index
        and manifest.manifests
        and all(d.artifact_type for d in manifest.manifests)
    ):
        return ""  # a referrers list (the tag scheme's index)
    return None
