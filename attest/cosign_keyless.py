"""Keyless cosign signatures in the legacy tag layout (certificate + Rekor bundle annotations).

Cosign's `.sig`/`.att` layers carry a Fulcio certificate and a "Rekor bundle" (the
Signed Entry Timestamp with the log entry body) but no inclusion proof, which
sigstore-python's `Bundle` demands. So this module runs the same checks itself, built
from sigstore-python's pieces: the SET against the trusted root's Rekor keys, the chain
to its Fulcio CAs at the logged time, the SCT against its CT log keys, the Sigstore
X.509 profile, the identity policy, the signature, and that the logged body is this
signature over this payload with this certificate (CVE-2022-36056).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ExtendedKeyUsage, KeyUsage
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError
from sigstore.errors import Error as SigstoreError

from attest.identity import Signers
from attest.identity_policy import IdentityPolicy, IdentityRejected
from attest.keys import KeyLoadError, PublicKey
from attest.results import Reason, Signer, TlogEntry, VerificationFailure
from attest.safejson import loads_object
from attest.sigstore_private import verify_certificate_sct, verify_rekor_set
from attest.trustroot import NamedRoot, TrustMaterial


@dataclass(frozen=True)
class RekorBundle:
    """The `dev.sigstore.cosign/bundle` annotation: a log entry and its SET."""

    signed_entry_timestamp: bytes
    body: bytes
    integrated_time: int
    log_index: int
    log_id: str

    @classmethod
    def parse(cls, text: str) -> RekorBundle:
        obj = loads_object(text.encode(), "cosign Rekor bundle", max_bytes=1 << 20)
        payload = obj.get("Payload")
        set_b64 = obj.get("SignedEntryTimestamp")
        if not isinstance(payload, dict) or not isinstance(set_b64, str):
            raise VerificationFailure(Reason.TLOG_MISSING, "Rekor bundle lacks Payload or SET")
        body, when = payload.get("body"), payload.get("integratedTime")
        index, log_id = payload.get("logIndex"), payload.get("logID")
        if not (
            isinstance(body, str)
            and isinstance(when, int)
            and isinstance(index, int)
            and isinstance(log_id, str)
        ):
            raise VerificationFailure(Reason.TLOG_MISSING, "Rekor bundle payload is incomplete")
        try:
            return cls(
                base64.b64decode(set_b64, validate=True),
                base64.b64decode(body, validate=True),
                when,
                index,
                log_id,
            )
        except (binascii.Error, ValueError) as exc:
            raise VerificationFailure(Reason.TLOG_MISSING, "Rekor bundle is not base64") from exc

    def canonical(self) -> bytes:
        """What the SET signs: RFC 8785 JSON of body, integratedTime, logID, logIndex."""
        return rfc8785.dumps(
            {
                "body": base64.b64encode(self.body).decode(),
                "integratedTime": self.integrated_time,
                "logID": self.log_id,
                "logIndex": self.log_index,
            }
        )


def load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise VerificationFailure(
            Reason.CERTIFICATE_INVALID, f"certificate is not valid PEM: {exc}"
        ) from exc


def _verify_set(root: NamedRoot, rekor: RekorBundle) -> None:
    try:
        verify_rekor_set(
            root.root, bytes.fromhex(rekor.log_id), rekor.signed_entry_timestamp, rekor.canonical()
        )
    except (SigstoreError, ValueError) as exc:
        raise VerificationFailure(
            Reason.TLOG_PROMISE_INVALID, f"signed entry timestamp does not verify: {exc}"
        ) from exc


def _verify_chain(
    root: NamedRoot, cert: x509.Certificate, when: datetime
) -> list[x509.Certificate]:
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(root.root.get_fulcio_certs()))
            .time(when)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        return list(verifier.verify(cert, []).chain[1:])
    except (X509VerificationError, SigstoreError, ValueError) as exc:
        raise VerificationFailure(
            Reason.CERTIFICATE_CHAIN_INVALID, f"certificate does not chain to {root.name}: {exc}"
        ) from exc


def _verify_profile(cert: x509.Certificate, when: datetime) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(KeyUsage).value
        extended = cert.extensions.get_extension_for_class(ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise VerificationFailure(Reason.CERTIFICATE_INVALID, str(exc)) from exc
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise VerificationFailure(Reason.CERTIFICATE_INVALID, "certificate is not for code signing")
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise VerificationFailure(
            Reason.CERTIFICATE_EXPIRED, "the log entry is outside the certificate's validity"
        )


def _same_cert(encoded: object, cert: x509.Certificate) -> bool:
    if not isinstance(encoded, str):
        return False
    try:
        logged = x509.load_pem_x509_certificate(base64.b64decode(encoded))
    except (ValueError, binascii.Error):
        return False
    return logged.public_bytes(serialization.Encoding.DER) == cert.public_bytes(
        serialization.Encoding.DER
    )


def _check_body(
    rekor: RekorBundle, cert: x509.Certificate, signature: bytes, payload: bytes
) -> None:
    """The logged entry must be exactly this signature, certificate and payload."""
    body: dict[str, Any] = loads_object(rekor.body, "Rekor entry body", max_bytes=1 << 20)
    kind, spec = body.get("kind"), body.get("spec")
    payload_hash = hashlib.sha256(payload).hexdigest()
    ok = False
    if kind == "hashedrekord" and isinstance(spec, dict):
        sig = spec.get("signature", {})
        ok = (
            isinstance(sig, dict)
            and sig.get("content") == base64.b64encode(signature).decode()
            and _same_cert(sig.get("publicKey", {}).get("content"), cert)
            and spec.get("data", {}).get("hash", {}).get("value") == payload_hash
        )
    elif kind in ("intoto", "dsse") and isinstance(spec, dict):
        content = spec.get("content", spec)
        logged_hash = content.get("payloadHash", {}).get("value")
        verifiers = [
            s.get("publicKey") or s.get("verifier")
            for s in (content.get("envelope", {}).get("signatures") or spec.get("signatures") or [])
            if isinstance(s, dict)
        ]
        ok = logged_hash == payload_hash and any(_same_cert(v, cert) for v in verifiers)
    if not ok:
        raise VerificationFailure(
            Reason.TLOG_INCONSISTENT,
            f"the {kind!r} log entry does not record this signature, certificate and payload",
        )


def _signature_ok(cert: x509.Certificate, signature: bytes, message: bytes) -> bool:
    """Fulcio keys sign SHA-256 digests whatever the curve (the log records a SHA-256)."""
    try:
        key = PublicKey.from_crypto(cert.public_key())
    except KeyLoadError as exc:
        raise VerificationFailure(Reason.CERTIFICATE_INVALID, str(exc)) from exc
    return key.verify_sha256(signature, message)


def verify_legacy_keyless(
    *,
    certificate_pem: str,
    rekor_bundle: str | None,
    signature: bytes,
    signed_message: bytes,
    logged_payload: bytes,
    signers: Signers,
    trust: TrustMaterial,
) -> tuple[Signer, TlogEntry]:
    """Verify a cosign keyless signature; `signed_message` is what the key signed
    (the payload, or DSSE's PAE), `logged_payload` what Rekor hashed."""
    cert = load_certificate(certificate_pem)
    if not rekor_bundle:
        raise VerificationFailure(
            Reason.TLOG_MISSING, "keyless signature without a transparency log entry"
        )
    rekor = RekorBundle.parse(rekor_bundle)
    when = datetime.fromtimestamp(rekor.integrated_time, tz=UTC)
    failures: list[VerificationFailure] = []
    for root in trust.roots:
        try:
            _verify_set(root, rekor)
            chain = _verify_chain(root, cert, when)
            try:
                verify_certificate_sct(cert, chain, root.root)
            except (SigstoreError, ValueError) as exc:
                raise VerificationFailure(Reason.SCT_INVALID, str(exc)) from exc
        except VerificationFailure as exc:
            failures.append(exc)
            continue
        _verify_profile(cert, when)
        policy = IdentityPolicy(list(signers.identities))
        try:
            policy.verify(cert)
        except IdentityRejected as exc:
            raise VerificationFailure(exc.reason, str(exc)) from exc
        if not _signature_ok(cert, signature, signed_message):
            raise VerificationFailure(
                Reason.SIGNATURE_INVALID, "signature does not verify with the certificate's key"
            )
        _check_body(rekor, cert, signature, logged_payload)
        assert policy.signer is not None
        return policy.signer, TlogEntry(rekor.log_index, rekor.integrated_time, rekor.log_id)
    if not failures:
        raise VerificationFailure(Reason.CERTIFICATE_CHAIN_INVALID, "no trusted root configured")
    raise failures[0]
