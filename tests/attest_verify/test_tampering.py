"""Tampering with any part of real signed material is rejected with a specific reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from attest.bundle import verify_bundle
from attest.cosign_keyless import verify_legacy_keyless
from attest.identity import KeylessIdentity, Signers
from attest.results import Reason, VerificationFailure
from attest.trustroot import TrustMaterial
from tests.attest_verify.sigstore_material import POSITIVE, SIGSTORE, legacy_cosign_layer

V3 = POSITIVE[1]  # bundle_v3.txt: message signature, Rekor v1 entry with proof and promise
DSSE = POSITIVE[-1]  # a.dsse: DSSE envelope, Rekor v2 entry


def flip(b64: str, at: int = -1) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def tampered(bundle: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    body = json.loads(bundle)
    change(body)
    return json.dumps(body).encode()


def entry(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["verificationMaterial"]["tlogEntries"][0]
    return result


def cert(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["verificationMaterial"]["certificate"]
    return result


def _sig(b: dict[str, Any]) -> None:
    b["messageSignature"]["signature"] = flip(b["messageSignature"]["signature"], 10)


def _cert(b: dict[str, Any]) -> None:
    cert(b)["rawBytes"] = flip(cert(b)["rawBytes"], -5)


def _proof_hash(b: dict[str, Any]) -> None:
    entry(b)["inclusionProof"]["hashes"][0] = flip(entry(b)["inclusionProof"]["hashes"][0])


def _root_hash(b: dict[str, Any]) -> None:
    entry(b)["inclusionProof"]["rootHash"] = flip(entry(b)["inclusionProof"]["rootHash"])


def _checkpoint(b: dict[str, Any]) -> None:
    proof = entry(b)["inclusionProof"]
    proof["checkpoint"]["envelope"] = proof["checkpoint"]["envelope"].replace("\n\n—", "\n\n— x", 1)


def _promise(b: dict[str, Any]) -> None:
    promise = entry(b)["inclusionPromise"]
    promise["signedEntryTimestamp"] = flip(promise["signedEntryTimestamp"], 12)


def _body(b: dict[str, Any]) -> None:
    entry(b)["canonicalizedBody"] = flip(entry(b)["canonicalizedBody"], 40)


V3_CASES = [
    ("signature", _sig, Reason.SIGNATURE_INVALID),
    ("certificate", _cert, Reason.CERTIFICATE_CHAIN_INVALID),
    ("inclusion-proof-hash", _proof_hash, Reason.TLOG_PROOF_INVALID),
    ("inclusion-proof-root", _root_hash, Reason.TLOG_PROOF_INVALID),
    ("checkpoint-signature", _checkpoint, Reason.TLOG_PROOF_INVALID),
    ("inclusion-promise", _promise, Reason.TLOG_PROMISE_INVALID),
    ("log-entry-body", _body, Reason.TLOG_PROOF_INVALID),
]


def who(fx: Any) -> Signers:
    return Signers((KeylessIdentity(fx.issuer, fx.identity),))


@pytest.mark.parametrize(("part", "change", "expected"), V3_CASES, ids=[c[0] for c in V3_CASES])
def test_message_signature_bundle_tampering(
    part: str, change: Callable[[dict[str, Any]], None], expected: Reason, staging: TrustMaterial
) -> None:
    bundle = tampered(V3.bundle(), change)
    with pytest.raises(VerificationFailure) as info:
        verify_bundle(
            bundle, artifact=V3.artifact_path.read_bytes(), signers=who(V3), trust=staging
        )
    assert info.value.reason == expected, info.value.message


def test_flipped_artifact_byte_is_a_digest_mismatch(staging: TrustMaterial) -> None:
    data = bytearray(V3.artifact_path.read_bytes())
    data[0] ^= 0x01
    with pytest.raises(VerificationFailure) as info:
        verify_bundle(V3.bundle(), artifact=bytes(data), signers=who(V3), trust=staging)
    assert info.value.reason == Reason.ARTIFACT_DIGEST_MISMATCH


def _swap_subject(b: dict[str, Any]) -> None:
    statement = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    b["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _dsse_sig(b: dict[str, Any]) -> None:
    sig = b["dsseEnvelope"]["signatures"][0]
    sig["sig"] = flip(sig["sig"], 8)


DSSE_CASES = [
    ("swapped-subject-digest", _swap_subject, Reason.SIGNATURE_INVALID),
    ("signature", _dsse_sig, Reason.SIGNATURE_INVALID),
    ("certificate", _cert, Reason.CERTIFICATE_CHAIN_INVALID),
    ("inclusion-proof-hash", _proof_hash, Reason.TLOG_PROOF_INVALID),
    ("checkpoint-signature", _checkpoint, Reason.TLOG_PROOF_INVALID),
]


@pytest.mark.parametrize(("part", "change", "expected"), DSSE_CASES, ids=[c[0] for c in DSSE_CASES])
def test_dsse_bundle_tampering(
    part: str, change: Callable[[dict[str, Any]], None], expected: Reason, staging: TrustMaterial
) -> None:
    bundle = tampered(DSSE.bundle(), change)
    with pytest.raises(VerificationFailure) as info:
        verify_bundle(bundle, artifact=None, signers=who(DSSE), trust=staging)
    assert info.value.reason == expected, info.value.message


def legacy(
    staging: TrustMaterial,
    *,
    payload: bytes | None = None,
    signature: bytes | None = None,
    notes: dict[str, str] | None = None,
    source: bytes | None = None,
) -> Reason | None:
    sig, annotations = legacy_cosign_layer(source or V3.bundle())
    annotations.update(notes or {})
    data = V3.artifact_path.read_bytes() if payload is None else payload
    try:
        verify_legacy_keyless(
            certificate_pem=annotations["dev.sigstore.cosign/certificate"],
            rekor_bundle=annotations.get("dev.sigstore.cosign/bundle"),
            signature=sig if signature is None else signature,
            signed_message=data,
            logged_payload=data,
            signers=who(V3),
            trust=staging,
        )
    except VerificationFailure as exc:
        return exc.reason
    return None


def _rekor(change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
    _, annotations = legacy_cosign_layer(V3.bundle())
    rekor = json.loads(annotations["dev.sigstore.cosign/bundle"])
    change(rekor)
    return {"dev.sigstore.cosign/bundle": json.dumps(rekor)}


def test_legacy_cosign_annotations_verify_and_tampering_is_rejected(
    staging: TrustMaterial, public_good: TrustMaterial
) -> None:
    assert legacy(staging) is None
    assert legacy(public_good) == Reason.TLOG_PROMISE_INVALID
    sig, _ = legacy_cosign_layer(V3.bundle())
    bad_sig = bytearray(sig)
    bad_sig[10] ^= 1
    assert legacy(staging, signature=bytes(bad_sig)) == Reason.SIGNATURE_INVALID
    assert legacy(staging, payload=b"another payload") == Reason.SIGNATURE_INVALID

    def set_flip(r: dict[str, Any]) -> None:
        r["SignedEntryTimestamp"] = flip(r["SignedEntryTimestamp"], 12)

    def body_flip(r: dict[str, Any]) -> None:
        r["Payload"]["body"] = flip(r["Payload"]["body"], 40)

    assert legacy(staging, notes=_rekor(set_flip)) == Reason.TLOG_PROMISE_INVALID
    assert legacy(staging, notes=_rekor(body_flip)) == Reason.TLOG_PROMISE_INVALID
    pem = legacy_cosign_layer(POSITIVE[0].bundle())[1]["dev.sigstore.cosign/certificate"]
    # A real certificate, but not the one logged: not valid at the logged time.
    assert (
        legacy(staging, notes={"dev.sigstore.cosign/certificate": pem})
        == Reason.CERTIFICATE_CHAIN_INVALID
    )
    no_bundle = {"dev.sigstore.cosign/bundle": ""}
    assert legacy(staging, notes=no_bundle) == Reason.TLOG_MISSING
    # CVE-2022-36056: a valid log entry for another signature.
    cve = (SIGSTORE / "bundle_cve_2022_36056.txt.sigstore").read_bytes()
    assert (
        legacy(staging, source=cve, payload=(SIGSTORE / "bundle_cve_2022_36056.txt").read_bytes())
        == Reason.TLOG_INCONSISTENT
    )
