"""Every use of sigstore-python's private API, in one module.

sigstore-python's public API verifies bundles; Zoll also needs what it keeps private:
the trusted roots it embeds (to verify offline with exactly the bytes every auditor with
the same version has), the Rekor and CT keyrings of a root (cosign's legacy layout has a
Signed Entry Timestamp and an SCT but no bundle), and a bundle's own DSSE envelope,
message signature and log entry. Private names may change in any release: the version
is pinned to the major release tested (pyproject.toml), nothing else in Zoll imports
`sigstore._…` or reads `._inner` (tests/attest_verify/test_sigstore_private.py checks
both), and an upgrade that moves them breaks here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Final

from cryptography import x509
from sigstore._internal.sct import verify_sct
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import KeyID
from sigstore.models import Bundle, TrustedRoot

TESTED_MAJOR: Final = 4
"""The sigstore-python major version these uses are written for (pyproject pins it)."""


def embedded_trusted_root(instance: str) -> bytes:
    """`trusted_root.json` as shipped in the sigstore package for a TUF instance folder
    (e.g. `https%3A%2F%2Ftuf-repo-cdn.sigstore.dev`)."""
    return (resources.files("sigstore._store") / instance / "trusted_root.json").read_bytes()


def verify_rekor_set(root: TrustedRoot, log_id: bytes, signature: bytes, data: bytes) -> None:
    """Verify a Rekor Signed Entry Timestamp with the root's log keys (raises sigstore's
    errors or ValueError)."""
    root.rekor_keyring(KeyringPurpose.VERIFY).verify(
        key_id=KeyID(log_id), signature=signature, data=data
    )


def verify_certificate_sct(
    cert: x509.Certificate, chain: list[x509.Certificate], root: TrustedRoot
) -> None:
    """Verify the certificate's embedded SCT with the root's CT log keys."""
    verify_sct(cert, chain, root.ct_keyring(KeyringPurpose.VERIFY))


@dataclass(frozen=True)
class BundleEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


@dataclass(frozen=True)
class BundleMessageSignature:
    signature: bytes
    digest: bytes | None
    """The message digest the bundle declares, if any."""


@dataclass(frozen=True)
class BundleLogEntry:
    log_index: int
    integrated_time: int | None
    log_id: bytes


def bundle_envelope(bundle: Bundle) -> BundleEnvelope | None:
    envelope = bundle._inner.dsse_envelope
    if envelope is None:
        return None
    return BundleEnvelope(
        envelope.payload_type, envelope.payload, tuple(s.sig for s in envelope.signatures)
    )


def bundle_message_signature(bundle: Bundle) -> BundleMessageSignature | None:
    signature = bundle._inner.message_signature
    if signature is None:
        return None
    declared = signature.message_digest
    return BundleMessageSignature(
        signature.signature, declared.digest if declared is not None else None
    )


def bundle_log_entry(bundle: Bundle) -> BundleLogEntry:
    inner = bundle.log_entry._inner
    return BundleLogEntry(inner.log_index, inner.integrated_time or None, inner.log_id.key_id)
