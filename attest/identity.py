"""Who may sign: keyless identities (Fulcio certificate SAN, OIDC issuer, CI claims) and keys.

A keyless identity matches a certificate when the issuer, the subject (exact or a
full-match regex) and every configured claim agree. The claims are Fulcio's
certificate extensions (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md):
the GitHub-specific v1 ones and the provider-neutral v2 ones GitLab also sets.

Reading a trust policy needs this module, verifying a keyless signature needs sigstore:
the matcher sigstore's verifier calls (`attest.identity_policy`) lives apart, so a
registry that only stores and serves images never loads sigstore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from attest.keys import PublicKey
from attest.results import Reason, Signer

_FULCIO: Final = "1.3.6.1.4.1.57264.1."
ISSUER_V1: Final = ObjectIdentifier(_FULCIO + "1")
ISSUER_V2: Final = ObjectIdentifier(_FULCIO + "8")
OTHERNAME_SAN: Final = ObjectIdentifier(_FULCIO + "7")

CLAIM_OIDS: Final[dict[str, tuple[str, bool]]] = {
    # name: (oid suffix, DER-encoded UTF8String?)
    "github_workflow_trigger": ("2", False),
    "github_workflow_sha": ("3", False),
    "github_workflow_name": ("4", False),
    "github_workflow_repository": ("5", False),
    "github_workflow_ref": ("6", False),
    "build_signer_uri": ("9", True),
    "build_signer_digest": ("10", True),
    "runner_environment": ("11", True),
    "source_repository_uri": ("12", True),
    "source_repository_digest": ("13", True),
    "source_repository_ref": ("14", True),
    "source_repository_identifier": ("15", True),
    "source_repository_owner_uri": ("16", True),
    "source_repository_owner_identifier": ("17", True),
    "build_config_uri": ("18", True),
    "build_config_digest": ("19", True),
    "build_trigger": ("20", True),
    "run_invocation_uri": ("21", True),
    "source_repository_visibility": ("22", True),
}
"""Claims a policy may require, by the names cosign's `--certificate-*` flags use."""


class IdentityError(ValueError):
    """An identity rule in a policy is malformed."""


def _der_utf8(value: bytes) -> str | None:
    """The text of a DER UTF8String (tag 0x0c), or None when it is not one."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if len(value) != offset + length:
        return None
    try:
        return value[offset:].decode()
    except UnicodeDecodeError:
        return None


def _fulcio_extensions(cert: x509.Certificate) -> dict[str, bytes]:
    """Fulcio's extensions by OID, read once (looking each one up is quadratic)."""
    return {
        ext.oid.dotted_string: ext.value.value
        for ext in cert.extensions
        if isinstance(ext.value, x509.UnrecognizedExtension)
        and ext.oid.dotted_string.startswith(_FULCIO)
    }


def _extension_text(cert: x509.Certificate, oid: ObjectIdentifier, der: bool) -> str | None:
    value = _fulcio_extensions(cert).get(oid.dotted_string)
    return None if value is None else _decode(value, der)


def _decode(value: bytes, der: bool) -> str | None:
    if der:
        return _der_utf8(value)
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded (v2 extension preferred, v1 as fallback)."""
    return _extension_text(cert, ISSUER_V2, True) or _extension_text(cert, ISSUER_V1, False)


def certificate_subjects(cert: x509.Certificate) -> list[str]:
    """Every SAN value: e-mail, URI, DNS name, and Fulcio's username otherName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    out.extend(san.get_values_for_type(x509.RFC822Name))
    out.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
    out.extend(san.get_values_for_type(x509.DNSName))
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OTHERNAME_SAN and (text := _der_utf8(other.value)):
            out.append(text)
    return out


def certificate_claims(cert: x509.Certificate) -> dict[str, str]:
    present = _fulcio_extensions(cert)
    claims = {}
    for name, (suffix, der) in CLAIM_OIDS.items():
        raw = present.get(_FULCIO + suffix)
        if raw is not None and (value := _decode(raw, der)) is not None:
            claims[name] = value
    return claims


@dataclass(frozen=True)
class KeylessIdentity:
    """An allowed keyless signer. Exactly one of `subject` / `subject_regex` is set."""

    issuer: str
    subject: str | None = None
    subject_regex: str | None = None
    claims: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if (self.subject is None) == (self.subject_regex is None):
            raise IdentityError("a keyless identity needs exactly one of subject, subject_regex")
        if not self.issuer:
            raise IdentityError("a keyless identity needs an issuer")
        if self.subject_regex is not None:
            try:
                re.compile(self.subject_regex)
            except re.error as exc:
                raise IdentityError(f"subject_regex is not a regex: {exc}") from exc
        unknown = set(self.claims) - set(CLAIM_OIDS)
        if unknown:
            raise IdentityError(f"unknown certificate claims: {', '.join(sorted(unknown))}")

    def mismatch(self, cert: x509.Certificate) -> tuple[Reason, str] | None:
        """None when `cert` belongs to this identity, else the reason it does not."""
        issuer = certificate_issuer(cert)
        if issuer != self.issuer:
            return Reason.ISSUER_MISMATCH, f"issuer {issuer!r} is not {self.issuer!r}"
        subjects = certificate_subjects(cert)
        if self.subject is not None:
            ok = self.subject in subjects
            wanted = repr(self.subject)
        else:
            assert self.subject_regex is not None
            pattern = re.compile(self.subject_regex)
            ok = any(pattern.fullmatch(s) for s in subjects)
            wanted = f"matching /{self.subject_regex}/"
        if not ok:
            return Reason.IDENTITY_MISMATCH, f"subject {subjects} is not {wanted}"
        claims = certificate_claims(cert) if self.claims else {}
        for claim, expected in sorted(self.claims.items()):
            if claims.get(claim) != expected:
                return (
                    Reason.CLAIM_MISMATCH,
                    f"claim {claim} is {claims.get(claim)!r}, not {expected!r}",
                )
        return None


@dataclass(frozen=True)
class TrustedKey:
    """An allowed key-based signer."""

    key: PublicKey
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.key.keyid


@dataclass(frozen=True)
class Signers:
    """Everyone a policy lets sign: keyless identities and keys."""

    identities: tuple[KeylessIdentity, ...] = ()
    keys: tuple[TrustedKey, ...] = ()

    def key_signer(self, verified: list[TrustedKey]) -> Signer:
        return Signer(
            kind="key",
            keyid=verified[0].key.keyid,
            matched=tuple(k.label for k in verified),
        )
