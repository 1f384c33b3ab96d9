"""The keyless-identity check as sigstore-python's verifier calls it.

Apart from `attest.identity` (which a trust policy needs to be read) because this side
subclasses sigstore's error: only verification imports it, and with it sigstore.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from sigstore.errors import VerificationError

from attest.identity import (
    KeylessIdentity,
    certificate_claims,
    certificate_issuer,
    certificate_subjects,
)
from attest.results import Reason, Signer

_REASON_RANK: Final = {Reason.ISSUER_MISMATCH: 0, Reason.IDENTITY_MISMATCH: 1}


class IdentityRejected(VerificationError):
    """Raised from inside sigstore's verifier when no allowed identity matches."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IdentityPolicy:
    """A sigstore `VerificationPolicy` that records which allowed identities matched.

    sigstore-python calls `verify(cert)` after the chain and SCT checks; raising
    `IdentityRejected` carries our specific reason through its verifier unchanged.
    """

    def __init__(self, identities: list[KeylessIdentity]) -> None:
        self.identities = identities
        self.matched: tuple[str, ...] = ()
        self.signer: Signer | None = None

    def verify(self, cert: x509.Certificate) -> None:
        self.signer = None
        if not self.identities:
            raise IdentityRejected(
                Reason.NO_SIGNER_CONFIGURED, "the policy allows no keyless signer"
            )
        failures: list[tuple[Reason, str]] = []
        matched: list[str] = []
        for identity in self.identities:
            problem = identity.mismatch(cert)
            if problem is None:
                matched.append(identity.name or identity.subject or identity.subject_regex or "")
            else:
                failures.append(problem)
        if not matched:
            # The most specific failure: a claim beats a subject beats an issuer mismatch.
            reason, message = max(failures, key=lambda f: _REASON_RANK.get(f[0], 2))
            raise IdentityRejected(reason, message)
        self.matched = tuple(matched)
        subjects = certificate_subjects(cert)
        self.signer = Signer(
            kind="keyless",
            identity=subjects[0] if subjects else None,
            issuer=certificate_issuer(cert),
            claims=certificate_claims(cert),
            matched=self.matched,
        )
