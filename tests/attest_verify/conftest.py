"""Shared material for the verification tests: real images, real fixtures, test keys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attest.keys import PrivateKey
from attest.trustroot import TrustMaterial
from registry.oci.digest import Digest
from registry.oci.reader import OCILayoutReader
from tests.attest_verify.cosign_writer import CosignWriter, LayoutSink
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.paths import FIXTURES

SIGSTORE = FIXTURES / "sigstore"
IN_TOTO = FIXTURES / "in-toto"


@pytest.fixture(scope="session")
def staging() -> TrustMaterial:
    """The Sigstore staging root shipped in the sigstore package (the fixtures' root)."""
    return TrustMaterial.staging()


@pytest.fixture(scope="session")
def public_good() -> TrustMaterial:
    return TrustMaterial.public_good()


@pytest.fixture(scope="session")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real image built by buildah, pushed once into an OCI image layout."""
    work = tmp_path_factory.mktemp("buildah")
    builder = Builder(work)
    image = builder.build(
        "zoll-verify-test",
        BUSYBOX_BASE + 'RUN echo "provenance test" > /etc/zoll-test\n',
        files={},
    )
    return builder.push_oci_layout(image, work / "layout", "v1")


@dataclass
class SignedImage:
    """A private copy of the image layout, its digest, and a writer for attachments."""

    root: Path
    digest: Digest
    media_type: str
    manifest: bytes
    writer: CosignWriter

    def reader(self) -> OCILayoutReader:
        return OCILayoutReader(self.root)


@pytest.fixture
async def image(image_layout: Path, tmp_path: Path) -> SignedImage:
    root = tmp_path / "layout"
    shutil.copytree(image_layout, root)
    fetched = await OCILayoutReader(root).get_manifest("v1")
    return SignedImage(
        root, fetched.digest, fetched.media_type, fetched.raw, CosignWriter(LayoutSink(root))
    )


@pytest.fixture(scope="session")
def keys() -> dict[str, PrivateKey]:
    """One test key per algorithm cosign users sign with."""
    return {alg: PrivateKey.generate(alg) for alg in ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa")}


@pytest.fixture
def key_files(tmp_path: Path, keys: dict[str, PrivateKey]) -> Iterator[dict[str, Path]]:
    out = {}
    for alg, key in keys.items():
        path = tmp_path / f"{alg}.pub"
        path.write_text(key.public.pem())
        out[alg] = path
    yield out
