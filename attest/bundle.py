"""Sigstore bundles (v0.1, v0.2, v0.3): keyless through sigstore-python, key-based here.

Keyless bundles go through sigstore-python's `Verifier` (certificate chain at signing
time, SCT, transparency log inclusion proof/promise, signature, log-entry consistency)
against each trusted root offline. Its exceptions are plain `VerificationError`s with
messages; `_reason_for` maps them onto our stable `Reason` codes. sigstore-python does
not verify bundles whose verification material is a public key, so those are checked
here: the signature (message or DSSE) against the policy's keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sigstore.errors import CertValidationError
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle
from sigstore_models.common.v1 import HashAlgorithm

from attest import dsse
from attest.cosign import BUNDLE_MEDIA_TYPES
from attest.identity import Signers
from attest.identity_policy import IdentityPolicy, IdentityRejected
from attest.keys import PublicKey
from attest.results import Reason, Signer, TlogEntry, VerificationFailure
from attest.safejson import loads_object
from attest.sigstore_private import bundle_envelope, bundle_log_entry, bundle_message_signature
from attest.trustroot import TrustMaterial


@dataclass(frozen=True)
class BundleOutcome:
    """A verified bundle: who signed, where it was logged, and what it carried."""

    format: str
    signer: Signer
    tlog: TlogEntry | None
    payload_type: str | None = None
    payload: bytes | None = None
    """The DSSE payload (an in-toto statement), when the bundle holds an envelope."""
    tlog_note: str = ""


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationFailure(Reason.BUNDLE_INVALID, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationFailure(Reason.BUNDLE_INVALID, f"{what} is not base64") from exc


def _reason_for(exc: Exception) -> Reason:
    """Map a sigstore-python exception onto the most specific reason code."""
    if isinstance(exc, IdentityRejected):
        return exc.reason
    if isinstance(exc, CertValidationError):
        return Reason.CERTIFICATE_CHAIN_INVALID
    if isinstance(exc, InvalidBundle):
        return Reason.BUNDLE_INVALID
    text = str(exc)
    table = (
        ("SCT", Reason.SCT_INVALID),
        ("usage", Reason.CERTIFICATE_INVALID),
        ("SET:", Reason.TLOG_PROMISE_INVALID),
        ("inclusion promise", Reason.TLOG_PROMISE_INVALID),
        ("invalid log entry", Reason.TLOG_PROOF_INVALID),
        ("inconsistent with other materials", Reason.TLOG_INCONSISTENT),
        ("log entry payload hash", Reason.TLOG_INCONSISTENT),
        ("log entry signatures", Reason.TLOG_INCONSISTENT),
        ("log entry type", Reason.TLOG_INCONSISTENT),
        ("Expected entry type", Reason.TLOG_INCONSISTENT),
        ("expired at time of signing", Reason.CERTIFICATE_EXPIRED),
        ("verified time", Reason.TIMESTAMP_INVALID),
        ("timestamp", Reason.TIMESTAMP_INVALID),
        ("Timestamp", Reason.TIMESTAMP_INVALID),
        ("digest mismatch", Reason.ARTIFACT_DIGEST_MISMATCH),
        ("Signature is invalid", Reason.SIGNATURE_INVALID),
        ("DSSE: invalid signature", Reason.SIGNATURE_INVALID),
        ("DSSE:", Reason.BUNDLE_INVALID),
        ("without a DSSE envelope", Reason.BUNDLE_INVALID),
        ("Missing bundle message signature", Reason.BUNDLE_INVALID),
    )
    for needle, reason in table:
        if needle in text:
            return reason
    return Reason.VERIFICATION_FAILED


_ROOT_ONLY: Final = {
    Reason.CERTIFICATE_CHAIN_INVALID,
    Reason.SCT_INVALID,
    Reason.TIMESTAMP_INVALID,
    Reason.TLOG_PROOF_INVALID,
    Reason.TLOG_PROMISE_INVALID,
}
"""Failures that only say "not this root"; another root's answer is more informative."""


def _tlog_of(bundle: Bundle) -> TlogEntry:
    entry = bundle_log_entry(bundle)
    return TlogEntry(
        log_index=entry.log_index,
        integrated_time=entry.integrated_time,
        log_id=entry.log_id.hex(),
    )


def _first_cert(body: dict[str, Any]) -> bytes | None:
    material = body.get("verificationMaterial")
    if not isinstance(material, dict):
        return None
    cert = material.get("certificate")
    if isinstance(cert, dict):
        return _b64(cert.get("rawBytes"), "certificate.rawBytes")
    chain = material.get("x509CertificateChain")
    if isinstance(chain, dict):
        certs = chain.get("certificates")
        if isinstance(certs, list) and certs and isinstance(certs[0], dict):
            return _b64(certs[0].get("rawBytes"), "certificate chain")
    return None


def _precheck_signature(bundle: Bundle, artifact: bytes | Hashed | None) -> None:
    """Check the signature itself before sigstore-python's time and log checks.

    sigstore-python verifies signed timestamps (which cover the signature bytes) before
    the signature, so a flipped signature would surface as "not enough sources of
    verified time". Checking it first names the actual fault; everything is still
    verified again, in full, by sigstore-python afterwards.
    """
    try:
        key = PublicKey.from_crypto(bundle.signing_certificate.public_key())
    except ValueError:
        return  # sigstore-python reports unusable keys itself
    envelope = bundle_envelope(bundle)
    if envelope is not None:
        message = dsse.pae(envelope.payload_type, envelope.payload)
        if not any(key.verify_sha256(sig, message) for sig in envelope.signatures):
            raise VerificationFailure(Reason.SIGNATURE_INVALID, "DSSE signature does not verify")
        return
    signature = bundle_message_signature(bundle)
    if signature is None or artifact is None:
        return
    digest = artifact.digest if isinstance(artifact, Hashed) else hashlib.sha256(artifact).digest()
    if signature.digest is not None and signature.digest != digest:
        raise VerificationFailure(
            Reason.ARTIFACT_DIGEST_MISMATCH, "bundle message digest does not match the artifact"
        )
    if not _verify_prehashed(key, signature.signature, digest):
        raise VerificationFailure(
            Reason.SIGNATURE_INVALID, "message signature does not verify for the artifact"
        )


def _verify_keyless(
    raw: bytes,
    body: dict[str, Any],
    version: str,
    artifact: bytes | Hashed | None,
    signers: Signers,
    trust: TrustMaterial,
) -> BundleOutcome:
    cert_der = _first_cert(body)
    if cert_der is not None:
        try:
            x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            raise VerificationFailure(
                Reason.CERTIFICATE_INVALID, f"signing certificate is not valid DER: {exc}"
            ) from exc
    try:
        bundle = Bundle.from_json(raw)
    except (SigstoreError, ValueError) as exc:
        raise VerificationFailure(Reason.BUNDLE_INVALID, str(exc)) from exc
    if not trust.roots:
        raise VerificationFailure(Reason.CERTIFICATE_CHAIN_INVALID, "no trusted root is configured")
    _precheck_signature(bundle, artifact)
    failures: list[VerificationFailure] = []
    for named in trust.roots:
        policy = IdentityPolicy(list(signers.identities))
        try:
            payload_type: str | None = None
            payload: bytes | None = None
            if bundle_envelope(bundle) is not None:
                payload_type, payload = named.verifier.verify_dsse(bundle, policy)
            else:
                if artifact is None:
                    raise VerificationFailure(
                        Reason.BUNDLE_INVALID, "a message-signature bundle needs its artifact"
                    )
                named.verifier.verify_artifact(artifact, bundle, policy)
        except VerificationFailure as exc:
            failures.append(exc)
            continue
        except Exception as exc:  # sigstore's and cryptography's errors alike
            failures.append(
                VerificationFailure(_reason_for(exc), f"trusted root {named.name}: {exc}")
            )
            continue
        assert policy.signer is not None
        return BundleOutcome(
            format=f"sigstore-bundle-{version}",
            signer=policy.signer,
            tlog=_tlog_of(bundle),
            payload_type=payload_type,
            payload=payload,
            tlog_note=f"verified against trusted root {named.name}",
        )
    informative = [f for f in failures if f.reason not in _ROOT_ONLY]
    raise (informative or failures)[0]


def _verify_prehashed(key: PublicKey, signature: bytes, digest: bytes) -> bool:
    """Verify a signature over data known only by its SHA-256 (cosign's image signing)."""
    try:
        if isinstance(key.key, ec.EllipticCurvePublicKey):
            # The digest is the bundle's SHA2_256 message digest, whatever the curve.
            key.key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key.key, rsa.RSAPublicKey):
            key.key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        elif isinstance(key.key, ed25519.Ed25519PublicKey):
            return False
    except InvalidSignature:
        return False
    return True


def _verify_with_keys(
    body: dict[str, Any], version: str, artifact: bytes | Hashed | None, signers: Signers
) -> BundleOutcome:
    if not signers.keys:
        raise VerificationFailure(
            Reason.NO_SIGNER_CONFIGURED, "bundle is key-signed but the policy allows no key"
        )
    fmt = f"sigstore-bundle-{version}"
    note = "transparency log not checked for key-signed bundles"
    if isinstance(body.get("dsseEnvelope"), dict):
        try:
            envelope = dsse.Envelope.from_json(body["dsseEnvelope"])
        except dsse.EnvelopeError as exc:
            raise VerificationFailure(Reason.BUNDLE_INVALID, str(exc)) from exc
        ok = set(envelope.verified_keyids([k.key for k in signers.keys]))
        verified = [k for k in signers.keys if k.key.keyid in ok]
        if not verified:
            trusted = {k.key.keyid for k in signers.keys}
            hints = {s.keyid for s in envelope.signatures if s.keyid}
            if hints and not hints & trusted:
                raise VerificationFailure(
                    Reason.UNTRUSTED_KEY, "the bundle's DSSE envelope is signed by an untrusted key"
                )
            raise VerificationFailure(
                Reason.SIGNATURE_INVALID, "no trusted key verifies the bundle's DSSE signature"
            )
        return BundleOutcome(
            fmt, signers.key_signer(verified), None, envelope.payload_type, envelope.payload, note
        )
    message = body.get("messageSignature")
    if not isinstance(message, dict):
        raise VerificationFailure(Reason.BUNDLE_INVALID, "bundle has no signature content")
    signature = _b64(message.get("signature"), "messageSignature.signature")
    if artifact is None:
        raise VerificationFailure(
            Reason.BUNDLE_INVALID, "a message-signature bundle needs its artifact"
        )
    digest = artifact.digest if isinstance(artifact, Hashed) else hashlib.sha256(artifact).digest()
    declared = message.get("messageDigest")
    if (
        isinstance(declared, dict)
        and "digest" in declared
        and _b64(declared.get("digest"), "messageDigest.digest") != digest
    ):
        raise VerificationFailure(
            Reason.ARTIFACT_DIGEST_MISMATCH, "bundle message digest does not match the artifact"
        )
    verified = [
        trusted
        for trusted in signers.keys
        if (isinstance(artifact, bytes) and trusted.key.verify(signature, artifact))
        or _verify_prehashed(trusted.key, signature, digest)
    ]
    if not verified:
        raise VerificationFailure(
            Reason.SIGNATURE_INVALID, "no trusted key verifies the bundle's message signature"
        )
    return BundleOutcome(fmt, signers.key_signer(verified), None, tlog_note=note)


def bundle_version(raw: bytes) -> tuple[dict[str, Any], str]:
    """The parsed bundle and its version, refusing unknown media types early."""
    body = loads_object(raw, "sigstore bundle")
    media_type = body.get("mediaType")
    version = BUNDLE_MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
    if version is None:
        raise VerificationFailure(
            Reason.UNSUPPORTED_MEDIA_TYPE, f"unsupported bundle media type {media_type!r}"
        )
    return body, version


def verify_bundle(
    raw: bytes,
    *,
    artifact: bytes | Hashed | None,
    signers: Signers,
    trust: TrustMaterial,
) -> BundleOutcome:
    """Verify one serialised bundle; raise `VerificationFailure` with a specific reason.

    `artifact` is what a message-signature bundle signed (bytes, or a `Hashed` digest
    when only the digest is known, as for an image manifest); DSSE bundles carry their
    payload and return it for the caller to check the statement's subject.
    """
    body, version = bundle_version(raw)
    material = body.get("verificationMaterial")
    if isinstance(material, dict) and "publicKey" in material:
        return _verify_with_keys(body, version, artifact, signers)
    return _verify_keyless(raw, body, version, artifact, signers, trust)


def sha256_hashed(hex_digest: str) -> Hashed:
    """A `Hashed` for a known SHA-256 (an image digest's hex part)."""
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(hex_digest))
