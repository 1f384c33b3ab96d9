"""Node cards: who a Zoll node is, in one document signed with its attestation key.

A card names the node and its URL and carries every public key a peer must pin: the
attestation keys its statements are signed with, the verifier key of its log's
checkpoints, and its witness (cosigner) key. It is a DSSE envelope signed by the node's
active attestation key, so it proves possession; whether it is the *right* node is for
the operator adding the peer to confirm by comparing fingerprints out of band.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from attest.dsse import Envelope, EnvelopeError, Signature, pae
from attest.keys import KeyLoadError, PublicKey
from attest.signing import Signer
from attest.tlog.cosignature import CosignatureError, Cosigner
from attest.tlog.note import NoteError, NoteVerifier

CARD_PAYLOAD_TYPE: Final = "application/vnd.zoll.node-card.v1+json"
MAX_CARD_BYTES: Final = 256 * 1024


class CardError(ValueError):
    """A node card is malformed or its signature does not hold."""


def fingerprint(text: str) -> str:
    """A short, comparable fingerprint of a key as published (SHA-256, 16 hex pairs)."""
    digest = hashlib.sha256(text.strip().encode()).hexdigest()[:32]
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


@dataclass(frozen=True)
class NodeCard:
    name: str
    url: str
    log_origin: str
    log_key: str
    witness_key: str
    attestation_keys: tuple[str, ...]
    issued_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "logOrigin": self.log_origin,
            "logKey": self.log_key,
            "witnessKey": self.witness_key,
            "attestationKeys": list(self.attestation_keys),
            "issuedAt": self.issued_at,
        }

    @classmethod
    def from_json(cls, obj: object) -> NodeCard:
        if not isinstance(obj, dict):
            raise CardError("a node card is a JSON object")
        try:
            card = cls(
                name=_text(obj, "name"),
                url=_text(obj, "url"),
                log_origin=_text(obj, "logOrigin"),
                log_key=_text(obj, "logKey"),
                witness_key=_text(obj, "witnessKey"),
                attestation_keys=tuple(_texts(obj, "attestationKeys")),
                issued_at=_text(obj, "issuedAt"),
            )
        except (KeyError, TypeError) as exc:
            raise CardError(f"node card field {exc} is missing or not text") from None
        card.log_verifier()
        card.cosigner()
        card.public_keys()
        return card

    def log_verifier(self) -> NoteVerifier:
        try:
            verifier = NoteVerifier.from_vkey(self.log_key)
        except NoteError as exc:
            raise CardError(f"logKey: {exc}") from exc
        if verifier.name != self.log_origin:
            raise CardError(f"logKey is for {verifier.name!r}, not the origin {self.log_origin!r}")
        return verifier

    def cosigner(self) -> Cosigner:
        try:
            return Cosigner.from_vkey(self.witness_key)
        except CosignatureError as exc:
            raise CardError(f"witnessKey: {exc}") from exc

    def public_keys(self) -> list[PublicKey]:
        if not self.attestation_keys:
            raise CardError("a node card names at least one attestation key")
        try:
            return [PublicKey.from_pem(pem) for pem in self.attestation_keys]
        except KeyLoadError as exc:
            raise CardError(f"attestationKeys: {exc}") from exc

    def fingerprints(self) -> dict[str, str]:
        """What an operator compares out of band before pinning the node."""
        out = {"log": fingerprint(self.log_key), "witness": fingerprint(self.witness_key)}
        for key in self.public_keys():
            out[f"attestation {key.keyid[:12]}"] = fingerprint(key.pem())
        return out


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise TypeError(key)
    return value


def _texts(obj: dict[str, Any], key: str) -> list[str]:
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(key)
    return value


def sign_card(card: NodeCard, signer: Signer) -> bytes:
    payload = json.dumps(card.to_json(), sort_keys=True, separators=(",", ":")).encode()
    signature = signer.sign(pae(CARD_PAYLOAD_TYPE, payload))
    envelope = Envelope(CARD_PAYLOAD_TYPE, payload, (Signature(signer.public.keyid, signature),))
    return envelope.to_bytes()


def verify_card(raw: bytes) -> NodeCard:
    """The card inside a signed envelope, once one of the card's own attestation keys has
    verified the signature (possession, not identity: compare the fingerprints)."""
    if len(raw) > MAX_CARD_BYTES:
        raise CardError(f"a node card is larger than {MAX_CARD_BYTES} bytes")
    try:
        envelope = Envelope.from_bytes(raw)
    except EnvelopeError as exc:
        raise CardError(f"not a DSSE envelope: {exc}") from exc
    if envelope.payload_type != CARD_PAYLOAD_TYPE:
        raise CardError(f"payloadType is {envelope.payload_type}, not {CARD_PAYLOAD_TYPE}")
    try:
        card = NodeCard.from_json(json.loads(envelope.payload))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"the card is not JSON: {exc}") from exc
    message = pae(envelope.payload_type, envelope.payload)
    if not any(
        key.verify(sig.sig, message) for key in card.public_keys() for sig in envelope.signatures
    ):
        raise CardError("the card is not signed by any of its own attestation keys")
    return card


def card_from_document(raw: bytes) -> NodeCard:
    """The verified card of a `GET /api/v1/node` answer (its `envelope`)."""
    try:
        envelope = json.loads(raw)["envelope"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CardError(f"not a node card document: {exc}") from exc
    return verify_card(json.dumps(envelope).encode())
