"""Media types Zoll understands, and which of them are manifests."""

from typing import Final

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"

SIGSTORE_BUNDLE_V01: Final = "application/vnd.dev.sigstore.bundle+json;version=0.1"
SIGSTORE_BUNDLE_V02: Final = "application/vnd.dev.sigstore.bundle+json;version=0.2"
SIGSTORE_BUNDLE_V03: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIMPLESIGNING: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE: Final = "application/vnd.dsse.envelope.v1+json"
IN_TOTO: Final = "application/vnd.in-toto+json"

HELM_CONFIG: Final = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART: Final = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROVENANCE: Final = "application/vnd.cncf.helm.chart.provenance.v1.prov"

IMAGE_MANIFESTS: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
IMAGE_CONFIGS: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})
IMAGE_LAYERS: Final = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_NONDIST_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER,
    }
)
"""Filesystem layers a container runtime unpacks (anything else makes an artifact)."""
INDEXES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFESTS: Final = IMAGE_MANIFESTS | INDEXES
"""Every manifest media type Zoll stores and serves (Docker schema 1 is refused)."""


def base(media_type: str) -> str:
    """Strip parameters (`; charset=…`) and case so media types compare reliably."""
    return media_type.split(";", 1)[0].strip().lower()
