"""Sign → attach as OCI artifacts → read back from an OCI layout → verify independently.

The image is real (buildah), the reader is Zoll's `OCILayoutReader`, and the checks use
sigstore-python's bundle models and securesystemslib's DSSE verifier, never Zoll's own
verification code. skopeo reads the cosign `.att` manifest as a third party.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey
from sigstore_models.bundle.v1 import Bundle as SigstoreBundle

from attest import statements as st
from attest.artifacts import (
    ArtifactError,
    Blob,
    attestation_artifacts,
    cosign_tag,
    key_hint,
)
from attest.keys import KeyAlgorithm, PrivateKey, PublicKey
from attest.signing import sign_statement
from attest.tlog.entries import LogEntry
from registry.oci import mediatypes as mt
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest
from registry.oci.reader import OCILayoutReader
from tests.attest_sign.oci_layout import push
from tests.support.buildah import BUSYBOX_BASE, Builder

IMAGE = "registry.zoll.example/opendesk/nextcloud"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real image in an OCI layout; each test copies it."""
    work = tmp_path_factory.mktemp("build")
    builder = Builder(work)
    image = builder.build("attest-me", BUSYBOX_BASE + 'RUN echo "signed by zoll" > /etc/motd\n')
    return builder.push_oci_layout(image, work / "layout", "v1")


@pytest.fixture
def layout(image_layout: Path, tmp_path: Path) -> Path:
    target = tmp_path / "layout"
    subprocess.run(["cp", "-a", str(image_layout), str(target)], check=True)
    return target


async def image_descriptor(layout: Path) -> Descriptor:
    fetched = await OCILayoutReader(layout).get_manifest("v1")
    return Descriptor(fetched.media_type, fetched.digest, len(fetched.raw))


def the_vsa(digest: Digest, result: st.Result = "PASSED") -> dict[str, Any]:
    return st.vsa(
        image=IMAGE,
        digest=digest,
        verifier=st.Verifier("https://zoll.example/node/1", {"zoll": "0.1.0"}),
        time_verified=NOW,
        policy=st.ResourceRef("https://zoll.example/policies/opendesk", {"sha256": "ab" * 32}),
        result=result,
        verified_levels=["SLSA_BUILD_LEVEL_2"] if result == "PASSED" else [],
    )


def independent_verify(
    envelope_json: dict[str, Any], public: PublicKey, keyid: str | None = None
) -> dict[str, Any]:
    """securesystemslib checks the DSSE signature; returns the statement it covers.

    `keyid` defaults to the key's own: the envelope must name the key Zoll publishes.
    """
    envelope = SslibEnvelope.from_dict(copy.deepcopy(envelope_json))  # it mutates its input
    key = SSlibKey.from_crypto(public.key, keyid=keyid or public.keyid)
    accepted = envelope.verify([key], 1)
    assert list(accepted) == [keyid or public.keyid]
    statement: dict[str, Any] = json.loads(envelope.payload)
    return statement


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
async def test_referrer_bundle_round_trip_verifies_with_securesystemslib(
    layout: Path, algorithm: KeyAlgorithm
) -> None:
    key = PrivateKey.generate(algorithm)
    subject = await image_descriptor(layout)
    envelope = sign_statement(the_vsa(subject.digest), key)
    artifacts = attestation_artifacts(envelope, subject, key.public, created=NOW)
    push(layout, artifacts.referrer)

    reader = OCILayoutReader(layout)
    found = await reader.referrers(subject.digest, mt.SIGSTORE_BUNDLE_V03)
    assert [d.digest for d in found] == [artifacts.referrer.digest]
    manifest = parse_manifest((await reader.get_manifest(str(found[0].digest))).raw)
    assert manifest.subject is not None and manifest.subject.digest == subject.digest
    assert manifest.annotations["dev.sigstore.bundle.predicateType"] == st.VSA_V1
    [layer] = manifest.layers
    raw_bundle = await reader.read_blob(layer.digest, 1 << 20)

    bundle = SigstoreBundle.from_json(raw_bundle)  # sigstore-python's own bundle schema
    assert bundle.media_type == mt.SIGSTORE_BUNDLE_V03
    assert bundle.verification_material.public_key is not None
    assert bundle.verification_material.public_key.hint == key_hint(key.public)
    assert bundle.verification_material.tlog_entries == []
    statement = independent_verify(json.loads(raw_bundle)["dsseEnvelope"], key.public)
    assert statement["subject"][0]["digest"] == {"sha256": subject.digest.encoded}
    assert statement["predicate"]["verificationResult"] == "PASSED"


async def test_cosign_att_tag_accumulates_and_replaces_attestations(layout: Path) -> None:
    key = PrivateKey.generate("ecdsa-p256")
    subject = await image_descriptor(layout)
    reader = OCILayoutReader(layout)
    tag = cosign_tag(subject.digest)
    hardening = st.hardening_result(
        image=IMAGE,
        digest=subject.digest,
        evaluator=st.Verifier("https://zoll.example/node/1"),
        time_evaluated=NOW,
        catalog=st.ResourceRef("https://zoll.example/criteria"),
        catalog_version="2025.1",
        criteria=[st.CriterionOutcome("HC-18", "passed"), st.CriterionOutcome("HC-17", "passed")],
    )
    first = sign_statement(the_vsa(subject.digest, "FAILED"), key)
    second = sign_statement(hardening, key)
    third = sign_statement(the_vsa(subject.digest), key)
    existing = None
    for envelope, replace in ((first, False), (second, False), (first, False), (third, True)):
        artifacts = attestation_artifacts(
            envelope, subject, key.public, existing_att=existing, replace=replace
        )
        assert artifacts.cosign.tag == tag
        push(layout, artifacts.cosign)
        existing = (await OCILayoutReader(layout).get_manifest(tag)).raw

    reader = OCILayoutReader(layout)
    manifest = parse_manifest((await reader.get_manifest(tag)).raw)
    assert [d.media_type for d in manifest.layers] == [mt.DSSE_ENVELOPE] * 2
    assert [d.annotations["predicateType"] for d in manifest.layers] == [
        st.HARDENING_V1,
        st.VSA_V1,
    ]
    assert all(d.annotations["dev.cosignproject.cosign/signature"] == "" for d in manifest.layers)
    assert manifest.config is not None
    config = json.loads(await reader.read_blob(manifest.config.digest, 1 << 20))
    assert config["rootfs"]["diff_ids"] == [str(d.digest) for d in manifest.layers]
    results = []
    for layer in manifest.layers:
        statement = independent_verify(
            json.loads(await reader.read_blob(layer.digest, 1 << 20)), key.public
        )
        assert statement["subject"][0]["digest"]["sha256"] == subject.digest.encoded
        results.append(statement["predicateType"])
    assert results == [st.HARDENING_V1, st.VSA_V1]

    # skopeo (containers/image) reads the tag and copies it, checking every digest.
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:{tag}"],
        capture_output=True,
        check=True,
    ).stdout
    assert Digest.of(raw) == manifest.digest
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}:{tag}", f"oci:{layout.parent / 'copy'}:att"],
        capture_output=True,
        check=True,
    )


async def test_replacing_keeps_attestations_zoll_did_not_make(layout: Path) -> None:
    key = PrivateKey.generate("ecdsa-p256")
    subject = await image_descriptor(layout)
    theirs = sign_statement(the_vsa(subject.digest), PrivateKey.generate("ecdsa-p256"))
    foreign = Blob.of(mt.DSSE_ENVELOPE, theirs.to_bytes(), {"predicateType": st.VSA_V1})
    existing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": Blob.of(mt.OCI_CONFIG, b"{}").descriptor.to_json(),
            "layers": [foreign.descriptor.to_json()],
        }
    ).encode()
    ours = sign_statement(the_vsa(subject.digest, "FAILED"), key)
    first = attestation_artifacts(ours, subject, key.public, existing_att=existing)
    newer = sign_statement(the_vsa(subject.digest), key)
    second = attestation_artifacts(
        newer, subject, key.public, existing_att=first.cosign.raw, replace=True
    )
    layers = parse_manifest(second.cosign.raw).layers
    assert [d.digest for d in layers] == [
        foreign.descriptor.digest,
        Digest.of(newer.to_bytes()),
    ]


async def test_tampering_and_wrong_keys_are_caught_by_the_independent_verifier(
    layout: Path,
) -> None:
    key, other = PrivateKey.generate("ecdsa-p256"), PrivateKey.generate("ecdsa-p256")
    subject = await image_descriptor(layout)
    envelope = sign_statement(the_vsa(subject.digest), key)
    doc = envelope.to_json()
    forged = json.loads(base64.b64decode(doc["payload"]))
    forged["predicate"]["verificationResult"] = "PASSED"
    forged["subject"][0]["digest"]["sha256"] = "00" * 32
    tampered = {**doc, "payload": base64.b64encode(json.dumps(forged).encode()).decode()}
    with pytest.raises(VerificationError):
        independent_verify(tampered, key.public)
    with pytest.raises(VerificationError):
        independent_verify(doc, other.public, keyid=key.public.keyid)
    with pytest.raises(ArtifactError, match="not signed by key"):
        attestation_artifacts(envelope, subject, other.public)
    other_subject = Descriptor(subject.media_type, Digest.of(b"another image"), 10)
    with pytest.raises(ArtifactError, match="subjects do not include"):
        attestation_artifacts(envelope, other_subject, key.public)


async def test_log_coordinates_are_annotated_only_when_given(layout: Path) -> None:
    key = PrivateKey.generate("ed25519")
    subject = await image_descriptor(layout)
    envelope = sign_statement(the_vsa(subject.digest), key)
    plain = attestation_artifacts(envelope, subject, key.public, created=NOW)
    assert "dev.zoll.tlog.index" not in (plain.referrer.annotations or {})
    entry = LogEntry("zoll.example/log", 41, {"kind": "attestation"}, b"\0" * 32)
    logged = attestation_artifacts(envelope, subject, key.public, created=NOW, log_entry=entry)
    annotations = parse_manifest(logged.referrer.raw).annotations
    assert annotations["dev.zoll.tlog.index"] == "41"
    assert annotations["dev.zoll.tlog.origin"] == "zoll.example/log"
    assert annotations["dev.zoll.attestation.keyid"] == key.public.keyid
