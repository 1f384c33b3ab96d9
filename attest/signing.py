"""Sign in-toto statements into DSSE envelopes with Zoll's service key.

The key may live in memory, in a PEM file or in an HSM (PKCS#11), so signing goes through
the small `Signer` protocol; `attest.keys.PrivateKey` satisfies it. Every signature is
checked against the public key right after signing: a faulty HSM or a mismatched key
must fail here, not at a customer's admission controller.
"""

from __future__ import annotations

import json
from typing import Any, Final, Protocol, runtime_checkable

import rfc8785

from attest.dsse import Envelope, EnvelopeError, Signature, pae
from attest.keys import PublicKey

IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_V1: Final = "https://in-toto.io/Statement/v1"


class SigningError(RuntimeError):
    """The signer produced no usable signature (wrong key, HSM failure)."""


class StatementError(ValueError):
    """A statement is not a well-formed in-toto Statement v1."""


@runtime_checkable
class Signer(Protocol):
    """Anything that signs bytes and names its public key."""

    @property
    def public(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def check_statement(statement: object) -> dict[str, Any]:
    """Validate the parts of a Statement v1 that verifiers rely on; return it typed."""
    if not isinstance(statement, dict):
        raise StatementError("statement must be a JSON object")
    if statement.get("_type") != STATEMENT_V1:
        raise StatementError(f"_type must be {STATEMENT_V1}")
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise StatementError("predicateType must be a non-empty string")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise StatementError("subject must be a non-empty list")
    for i, subject in enumerate(subjects):
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digest, dict) or not digest:
            raise StatementError(f"subject[{i}].digest must be a non-empty object")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in digest.items()):
            raise StatementError(f"subject[{i}].digest must map algorithms to hex strings")
    if "predicate" in statement and not isinstance(statement["predicate"], dict):
        raise StatementError("predicate must be a JSON object")
    return statement


def statement_payload(statement: dict[str, Any]) -> bytes:
    """The exact bytes signed: RFC 8785 canonical JSON, so re-serialising cannot change them."""
    try:
        return rfc8785.dumps(check_statement(statement))
    except rfc8785.CanonicalizationError as exc:
        raise StatementError(f"statement cannot be canonicalised: {exc}") from exc


def sign_statement(statement: dict[str, Any], key: Signer) -> Envelope:
    """A DSSE envelope (payloadType in-toto) over `statement`, signed by `key`."""
    payload = statement_payload(statement)
    message = pae(IN_TOTO_PAYLOAD_TYPE, payload)
    try:
        sig = key.sign(message)
    except Exception as exc:  # HSM and backend errors come in many types
        raise SigningError(f"signing with key {key.public.keyid} failed: {exc}") from exc
    if not key.public.verify(sig, message):
        raise SigningError(f"the signature from key {key.public.keyid} does not verify")
    return Envelope(IN_TOTO_PAYLOAD_TYPE, payload, (Signature(key.public.keyid, sig),))


def envelope_statement(envelope: Envelope) -> dict[str, Any]:
    """The statement inside an in-toto envelope (not verified: call after verifying)."""
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise StatementError(f"payloadType is {envelope.payload_type}, not {IN_TOTO_PAYLOAD_TYPE}")
    try:
        statement = json.loads(envelope.payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StatementError(f"payload is not JSON: {exc}") from exc
    return check_statement(statement)


__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "STATEMENT_V1",
    "Envelope",
    "EnvelopeError",
    "Signer",
    "SigningError",
    "StatementError",
    "check_statement",
    "envelope_statement",
    "sign_statement",
    "statement_payload",
]
