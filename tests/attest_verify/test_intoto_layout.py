"""The in-toto demo supply chain: alice's layout, bob's and carl's links, foo.tar.gz."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from in_toto.models.metadata import Metadata
from securesystemslib.signer import CryptoSigner, SSlibKey

from attest.intoto_layout import verify_layout
from attest.keys import PrivateKey, PublicKey
from attest.results import Reason, VerificationFailure
from attest.trust_policy import TrustPolicy, TrustPolicyError
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from tests.attest_verify.conftest import IN_TOTO, SignedImage

DEMO = IN_TOTO / "demo_files"
FORMATS = {"metablock": IN_TOTO / "demo_files", "dsse": IN_TOTO / "demo_dsse_files"}
FOO = hashlib.sha256((DEMO / "foo.tar.gz").read_bytes()).hexdigest()


def signed_layout(folder: Path, owner: str = "alice") -> bytes:
    """The layout template signed by `owner` (the layout owner is alice)."""
    private = load_pem_private_key((DEMO / owner).read_bytes(), None)
    metadata = Metadata.load(str(folder / "demo.layout.template"))
    metadata.create_signature(CryptoSigner(private, SSlibKey.from_crypto(private.public_key())))
    return json.dumps(metadata.to_dict()).encode()


def alice() -> PublicKey:
    return PublicKey.from_pem((DEMO / "alice.pub").read_bytes())


def links(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.link")}


@pytest.mark.parametrize("fmt", FORMATS)
def test_demo_supply_chain_verifies(fmt: str) -> None:
    folder = FORMATS[fmt]
    outcome = verify_layout(signed_layout(folder), [alice()], links(folder), {"foo.tar.gz": FOO})
    assert outcome.steps == ("write-code", "package")
    assert outcome.products["foo.tar.gz"] == FOO


@pytest.mark.parametrize("fmt", FORMATS)
def test_changed_product_fails(fmt: str) -> None:
    folder = FORMATS[fmt]
    changed = bytearray((DEMO / "foo.tar.gz").read_bytes())
    changed[-1] ^= 1
    with pytest.raises(VerificationFailure) as info:
        verify_layout(
            signed_layout(folder),
            [alice()],
            links(folder),
            {"foo.tar.gz": hashlib.sha256(changed).hexdigest()},
        )
    assert info.value.reason == Reason.PRODUCT_MISMATCH


@pytest.mark.parametrize("fmt", FORMATS)
def test_layout_signed_by_another_key_fails(fmt: str) -> None:
    folder = FORMATS[fmt]
    with pytest.raises(VerificationFailure) as info:
        verify_layout(signed_layout(folder, owner="bob"), [alice()], links(folder))
    assert info.value.reason == Reason.LAYOUT_SIGNATURE_INVALID


def _tamper_link(raw: bytes) -> bytes:
    """Change a recorded product hash inside a link, keeping its (now invalid) signature."""
    body = json.loads(raw)
    if "payload" in body:
        link = json.loads(base64.b64decode(body["payload"]))
        link["products"]["foo.py"]["sha256"] = "0" * 64
        body["payload"] = base64.b64encode(json.dumps(link).encode()).decode()
    else:
        body["signed"]["products"]["foo.py"]["sha256"] = "0" * 64
    return json.dumps(body).encode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_link_fails(fmt: str) -> None:
    folder = FORMATS[fmt]
    chain = links(folder)
    name = next(n for n in chain if n.startswith("write-code"))
    chain[name] = _tamper_link(chain[name])
    with pytest.raises(VerificationFailure) as info:
        verify_layout(signed_layout(folder), [alice()], chain)
    assert info.value.reason == Reason.LINK_THRESHOLD_NOT_MET


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_link_fails(fmt: str) -> None:
    folder = FORMATS[fmt]
    chain = {n: v for n, v in links(folder).items() if not n.startswith("package")}
    with pytest.raises(VerificationFailure) as info:
        verify_layout(signed_layout(folder), [alice()], chain)
    assert info.value.reason == Reason.LINK_MISSING


def test_layout_that_is_not_metadata_fails() -> None:
    with pytest.raises(VerificationFailure) as info:
        verify_layout(b'{"hello": "world"}', [alice()], {})
    assert info.value.reason == Reason.LAYOUT_INVALID


async def test_policy_requirement_runs_the_layout(
    image: SignedImage, tmp_path: Path, public_good: TrustMaterial
) -> None:
    folder = FORMATS["metablock"]
    (tmp_path / "root.layout").write_bytes(signed_layout(folder))
    (tmp_path / "links").mkdir()
    for name, raw in links(folder).items():
        (tmp_path / "links" / name).write_bytes(raw)
    policy_path = tmp_path / "trust.yaml"
    policy_path.write_text(
        f"""
require:
  in_toto:
    layout: root.layout
    layout_keys: [{DEMO / "alice.pub"}]
    links: links
    products:
      foo.tar.gz: {FOO}
"""
    )
    # Layout and links come from the policy's own files: without image_product nothing
    # ties them to the image, and a policy requiring only them would pass any image.
    with pytest.raises(TrustPolicyError, match="image_product"):
        TrustPolicy.load(policy_path)
    # Beside a requirement about the image, a supply-chain check of fixed products is fine.
    key = PrivateKey.generate()
    (tmp_path / "ci.pub").write_text(key.public.pem())
    with_signature = policy_path.read_text().replace(
        "require:", "signers: {ci: {key: ci.pub}}\nrequire:\n  signature: true"
    )
    (tmp_path / "signed.yaml").write_text(with_signature)
    image.writer.sign(image.digest, key)
    result = await verify_image(
        image.reader(), image.digest, TrustPolicy.load(tmp_path / "signed.yaml"), public_good
    )
    assert result.passed, result.to_json()
    assert result.requirement("in-toto").satisfied_by == ("in-toto:layout",)

    policy_path.write_text(policy_path.read_text() + "    image_product: foo.tar.gz\n")
    result = await verify_image(
        image.reader(), image.digest, TrustPolicy.load(policy_path), public_good
    )
    assert not result.passed
    assert result.requirement("in-toto").reasons == (Reason.PRODUCT_MISMATCH,)
