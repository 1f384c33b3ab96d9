"""DSSE envelopes (Dead Simple Signing Envelope v1): parse, sign, verify.

Both directions live here: `attest.verify` checks upstream envelopes, `attest.sign`
produces Zoll's own. Signatures are over PAE(payloadType, payload), never the raw payload.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from attest.keys import PrivateKey, PublicKey

MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
MAX_SIGNATURES = 32
"""Every signature may be tried with every trusted key: bound the work an envelope asks."""


class EnvelopeError(ValueError):
    """Bytes are not a well-formed DSSE envelope."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: what a DSSE signature actually signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} must be a base64 string")
    try:
        # DSSE allows standard or URL-safe base64, with or without padding.
        text = value.replace("-", "+").replace("_", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    @classmethod
    def from_json(cls, obj: object) -> Envelope:
        if not isinstance(obj, dict):
            raise EnvelopeError("envelope must be a JSON object")
        payload_type = obj.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise EnvelopeError("payloadType must be a non-empty string")
        payload = _b64decode(obj.get("payload"), "payload")
        raw_sigs = obj.get("signatures")
        if not isinstance(raw_sigs, list) or not raw_sigs:
            raise EnvelopeError("signatures must be a non-empty list")
        if len(raw_sigs) > MAX_SIGNATURES:
            raise EnvelopeError(f"more than {MAX_SIGNATURES} signatures")
        sigs = []
        for i, entry in enumerate(raw_sigs):
            if not isinstance(entry, dict):
                raise EnvelopeError(f"signatures[{i}] must be an object")
            keyid = entry.get("keyid") or ""
            if not isinstance(keyid, str):
                raise EnvelopeError(f"signatures[{i}].keyid must be a string")
            sigs.append(Signature(keyid, _b64decode(entry.get("sig"), f"signatures[{i}].sig")))
        return cls(payload_type, payload, tuple(sigs))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        if len(raw) > MAX_ENVELOPE_BYTES:
            raise EnvelopeError(f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
        try:
            return cls.from_json(json.loads(raw))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise EnvelopeError(f"envelope is not valid JSON: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()

    def verified_keyids(self, keys: list[PublicKey]) -> list[str]:
        """Ids of the given keys that produced a valid signature over this envelope.

        Matched by key, not by the `keyid` a signer wrote: it is unsigned, and
        securesystemslib, KMS and cosign spell it differently. Signatures naming the
        key's own id are tried first."""
        message = pae(self.payload_type, self.payload)
        found = []
        for key in keys:
            ordered = sorted(self.signatures, key=lambda s: s.keyid != key.keyid)
            if any(key.verify(s.sig, message) for s in ordered):
                found.append(key.keyid)
        return found


def sign(payload_type: str, payload: bytes, keys: list[PrivateKey]) -> Envelope:
    """An envelope over `payload` signed by every key in `keys`."""
    message = pae(payload_type, payload)
    return Envelope(
        payload_type,
        payload,
        tuple(Signature(k.public.keyid, k.sign(message)) for k in keys),
    )
