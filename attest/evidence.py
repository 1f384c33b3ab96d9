"""Turn each attached layer into checked `Evidence`: signature verified, subject matched.

Every layer ends as exactly one `Checked`, verified or with the specific reason it was
not; nothing here raises. The work is CPU-bound and synchronous: `attest.verify` runs
it in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from attest import dsse
from attest.bundle import sha256_hashed, verify_bundle
from attest.cosign import (
    BUNDLE_PREDICATE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    PREDICATE_TYPE_ANNOTATION,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    Layer,
    check_simple_signing,
    is_bundle_media_type,
)
from attest.cosign_keyless import verify_legacy_keyless
from attest.identity import Signers
from attest.intoto import COSIGN_SIGN_PREDICATE, Statement
from attest.results import Evidence, Reason, Signer, TlogEntry, VerificationFailure
from attest.safejson import loads_object
from attest.slsa import PROVENANCE_TYPES, parse_provenance
from attest.trustroot import TrustMaterial
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest


@dataclass(frozen=True)
class Checked:
    """A piece of evidence and, for a verified attestation, its statement."""

    evidence: Evidence
    statement: Statement | None = None


def _key_signer(
    signers: Signers, verified_keyids: set[str], hints: frozenset[str] | set[str] = frozenset()
) -> Signer:
    """The key signer, or why none: no key configured, an unknown key, or a bad signature."""
    verified = [k for k in signers.keys if k.key.keyid in verified_keyids]
    if verified:
        return signers.key_signer(verified)
    if not signers.keys:
        raise VerificationFailure(
            Reason.NO_SIGNER_CONFIGURED,
            "the signature has no certificate and the policy allows no key",
        )
    trusted = {k.key.keyid for k in signers.keys}
    if hints and not hints & trusted:
        raise VerificationFailure(
            Reason.UNTRUSTED_KEY, f"signed by key {sorted(hints)[0][:16]}…, which is not trusted"
        )
    raise VerificationFailure(
        Reason.SIGNATURE_INVALID,
        f"the signature does not verify with any of the {len(trusted)} trusted key(s)",
    )


def _simple_signing(
    layer: Layer, subject: Digest, signers: Signers, trust: TrustMaterial
) -> tuple[Signer, TlogEntry | None]:
    assert layer.descriptor is not None
    notes = layer.descriptor.annotations
    try:
        signature = base64.b64decode(notes.get(SIGNATURE_ANNOTATION, ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationFailure(Reason.MALFORMED, "signature annotation is not base64") from exc
    if not signature:
        raise VerificationFailure(Reason.MALFORMED, "layer has no signature annotation")
    certificate = notes.get(CERTIFICATE_ANNOTATION)
    if certificate:
        signer, tlog = verify_legacy_keyless(
            certificate_pem=certificate,
            rekor_bundle=notes.get(REKOR_BUNDLE_ANNOTATION),
            signature=signature,
            signed_message=layer.content,
            logged_payload=layer.content,
            signers=signers,
            trust=trust,
        )
    else:
        ok = {t.key.keyid for t in signers.keys if t.key.verify(signature, layer.content)}
        signer, tlog = _key_signer(signers, ok), None
    check_simple_signing(layer.content, subject)
    return signer, tlog


def _dsse_layer(
    layer: Layer, signers: Signers, trust: TrustMaterial
) -> tuple[Signer, TlogEntry | None, Statement]:
    assert layer.descriptor is not None
    notes = layer.descriptor.annotations
    try:
        envelope = dsse.Envelope.from_json(loads_object(layer.content, "DSSE envelope"))
    except dsse.EnvelopeError as exc:
        raise VerificationFailure(Reason.MALFORMED, str(exc)) from exc
    certificate = notes.get(CERTIFICATE_ANNOTATION)
    tlog: TlogEntry | None = None
    if certificate:
        if len(envelope.signatures) != 1:
            raise VerificationFailure(
                Reason.MALFORMED, "a keyless envelope must carry exactly one signature"
            )
        signer, tlog = verify_legacy_keyless(
            certificate_pem=certificate,
            rekor_bundle=notes.get(REKOR_BUNDLE_ANNOTATION),
            signature=envelope.signatures[0].sig,
            signed_message=dsse.pae(envelope.payload_type, envelope.payload),
            logged_payload=envelope.payload,
            signers=signers,
            trust=trust,
        )
    else:
        ok = set(envelope.verified_keyids([k.key for k in signers.keys]))
        hints = {sig.keyid for sig in envelope.signatures if sig.keyid}
        signer = _key_signer(signers, ok, hints)
    return signer, tlog, Statement.parse(envelope.payload, envelope.payload_type)


def check_layer(layer: Layer, subject: Digest, signers: Signers, trust: TrustMaterial) -> Checked:
    """Verify one layer; failures become unverified evidence with their reason."""
    desc = layer.descriptor
    media_type = desc.media_type if desc is not None else layer.attached.media_type
    notes = desc.annotations if desc is not None else {}
    claimed_type = notes.get(PREDICATE_TYPE_ANNOTATION) or layer.attached.annotations.get(
        BUNDLE_PREDICATE_ANNOTATION
    )
    kind = "signature" if layer.attached.kind == "signature" else "attestation"
    details = {"attachment": str(layer.attached.digest), "scheme": layer.attached.scheme}
    if layer.attached.tag:
        details["tag"] = layer.attached.tag
    if desc is not None:
        details["layer"] = str(desc.digest)
    base = Evidence(
        id=layer.evidence_id,
        kind=kind,
        format="unknown",
        verified=False,
        predicate_type=claimed_type,
        details=details,
    )
    try:
        if layer.problem is not None:
            raise layer.problem
        if media_type == mt.COSIGN_SIMPLESIGNING:
            base = replace(base, kind="signature", format="cosign-simplesigning")
            signer, tlog = _simple_signing(layer, subject, signers, trust)
            return Checked(replace(base, verified=True, signer=signer, tlog=tlog))
        if media_type == mt.DSSE_ENVELOPE:
            base = replace(base, kind="attestation", format="cosign-dsse")
            signer, tlog, statement = _dsse_layer(layer, signers, trust)
            base = replace(base, predicate_type=statement.predicate_type)
            statement.require_subject(subject)
            return _attestation(base, signer, tlog, statement)
        if is_bundle_media_type(media_type):
            # Until verified, the bundle's own shape says what it claims to be.
            signs_image = (
                b'"messageSignature"' in layer.content or claimed_type == COSIGN_SIGN_PREDICATE
            )
            base = replace(
                base,
                format="sigstore-bundle",
                kind="signature" if signs_image else "attestation",
            )
            outcome = verify_bundle(
                layer.content,
                artifact=sha256_hashed(subject.encoded) if subject.algorithm == "sha256" else None,
                signers=signers,
                trust=trust,
            )
            base = replace(base, format=outcome.format)
            if outcome.tlog_note:
                base = replace(base, details={**base.details, "tlog_note": outcome.tlog_note})
            if outcome.payload is None:
                return Checked(
                    replace(
                        base,
                        kind="signature",
                        verified=True,
                        signer=outcome.signer,
                        tlog=outcome.tlog,
                    )
                )
            statement = Statement.parse(outcome.payload, outcome.payload_type)
            base = replace(base, predicate_type=statement.predicate_type)
            statement.require_subject(subject)
            return _attestation(base, outcome.signer, outcome.tlog, statement)
        raise VerificationFailure(
            Reason.UNSUPPORTED_MEDIA_TYPE, f"layer media type {media_type!r} is not a signature"
        )
    except VerificationFailure as exc:
        return Checked(replace(base, reason=exc.reason, message=exc.message))
    except Exception as exc:  # fail closed: one odd layer never aborts the verification
        message = f"layer cannot be read ({type(exc).__name__}: {exc})"
        return Checked(replace(base, reason=Reason.MALFORMED, message=message))


def _attestation(
    base: Evidence, signer: Signer, tlog: TlogEntry | None, statement: Statement
) -> Checked:
    kind = "signature" if statement.predicate_type == COSIGN_SIGN_PREDICATE else "attestation"
    evidence = replace(
        base,
        details={**base.details, **_provenance_details(statement)},
        kind=kind,
        verified=True,
        signer=signer,
        tlog=tlog,
        predicate_type=statement.predicate_type,
    )
    return Checked(evidence, statement)


def _provenance_details(statement: Statement) -> dict[str, str]:
    """Builder and source of a SLSA provenance, so a result says who built what from
    where (the web page shows them) without the statement being read again."""
    if statement.predicate_type not in PROVENANCE_TYPES:
        return {}
    try:
        provenance = parse_provenance(statement)
    except VerificationFailure:
        return {}
    found = {
        "builder": provenance.builder_id,
        "build_type": provenance.build_type,
        "source_repository": provenance.source.repository,
        "source_ref": provenance.source.ref,
        "source_commit": provenance.source.commit,
    }
    return {k: v for k, v in found.items() if v}
