"""What the log records, and the exact bytes each leaf hashes.

A leaf is the RFC 8785 canonical JSON of an entry body `{"kind": ..., ...}`. Canonical
JSON means anyone holding the attestation can rebuild the leaf bytes byte for byte:
the body of an attestation entry is just the DSSE envelope, so `zoll log verify-inclusion`
needs nothing from Zoll but the envelope, the proof and a signed checkpoint.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import rfc8785

from attest.dsse import Envelope, EnvelopeError
from attest.tlog.hashing import leaf_hash

KIND_ATTESTATION: Final = "attestation"
KIND_ADMISSION: Final = "admission"
KINDS: Final = frozenset({KIND_ATTESTATION, KIND_ADMISSION})
MAX_BODY_BYTES: Final = 4 * 1024 * 1024


class EntryError(ValueError):
    """A document cannot be turned into a log entry."""


def canonical(body: dict[str, Any]) -> bytes:
    try:
        data = rfc8785.dumps(body)
    except rfc8785.CanonicalizationError as exc:
        raise EntryError(f"entry body cannot be canonicalised: {exc}") from exc
    if len(data) > MAX_BODY_BYTES:
        raise EntryError(f"entry body is larger than {MAX_BODY_BYTES} bytes")
    return data


def _check_body(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise EntryError("entry body must be a JSON object")
    kind = body.get("kind")
    if kind not in KINDS:
        raise EntryError(f"entry kind must be one of {sorted(KINDS)}, not {kind!r}")
    if kind == KIND_ATTESTATION:
        try:
            Envelope.from_json(body.get("envelope"))
        except EnvelopeError as exc:
            raise EntryError(f"attestation entry has no valid envelope: {exc}") from exc
    return body


@dataclass(frozen=True)
class LogRecord:
    """Something to append. `attestation_id` links a leaf to its row in `attestations`."""

    body: dict[str, Any]
    attestation_id: int | None = None

    def __post_init__(self) -> None:
        _check_body(self.body)

    @property
    def kind(self) -> str:
        kind: str = self.body["kind"]
        return kind

    def leaf_data(self) -> bytes:
        return canonical(self.body)

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf_data())

    @property
    def subject(self) -> tuple[str, str] | None:
        """(repository, digest) of the image an entry without an attestation row is about
        (its body's `subject`), stored with the leaf so an image's entries can be listed;
        attestation entries are found through their attestation row."""
        found = self.body.get("subject") if self.attestation_id is None else None
        if isinstance(found, dict):
            repository, digest = found.get("repository"), found.get("digest")
            if isinstance(repository, str) and isinstance(digest, str):
                return repository, digest
        return None


def attestation_record(envelope: Envelope, attestation_id: int | None = None) -> LogRecord:
    """The entry for one of Zoll's signed attestations."""
    return LogRecord({"kind": KIND_ATTESTATION, "envelope": envelope.to_json()}, attestation_id)


def admission_record(
    *,
    subject_digest: str,
    repository: str,
    decision: Literal["admitted", "denied"],
    reasons: list[str],
    decided_at: datetime,
    policy: str | None = None,
    tags: list[str] | None = None,
) -> LogRecord:
    """The entry for an admission decision (an image released from quarantine, or not)."""
    body: dict[str, Any] = {
        "kind": KIND_ADMISSION,
        "subject": {"repository": repository, "digest": subject_digest},
        "decision": decision,
        "reasons": list(reasons),
        "decidedAt": decided_at.isoformat().replace("+00:00", "Z"),
    }
    if policy is not None:
        body["policy"] = policy
    if tags:
        body["tags"] = sorted(tags)  # which tags named the image then (followers copy them)
    return LogRecord(body)


@dataclass(frozen=True)
class LogEntry:
    """An entry as the log holds it."""

    origin: str
    index: int
    body: dict[str, Any]
    leaf_hash: bytes
    integrated_at: datetime | None = None
    attestation_id: int | None = None

    @property
    def kind(self) -> str:
        kind: str = self.body["kind"]
        return kind

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "origin": self.origin,
            "logIndex": self.index,
            "kind": self.kind,
            "body": self.body,
            "leafHash": base64.b64encode(self.leaf_hash).decode(),
        }
        if self.integrated_at is not None:
            out["integratedTime"] = self.integrated_at.isoformat().replace("+00:00", "Z")
        return out


def record_from_document(obj: object) -> LogRecord:
    """Rebuild the log record from what a user holds: a log entry, a DSSE envelope or a
    sigstore bundle with a DSSE envelope. Its leaf hash is recomputed, never trusted."""
    if not isinstance(obj, dict):
        raise EntryError("expected a JSON object")
    if "body" in obj and "logIndex" in obj:
        record = LogRecord(_check_body(obj["body"]))
        claimed = obj.get("leafHash")
        if isinstance(claimed, str):
            try:
                stated = base64.b64decode(claimed, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise EntryError("leafHash is not valid base64") from exc
            if stated != record.leaf_hash():
                raise EntryError("leafHash does not match the entry body")
        return record
    envelope_obj = obj.get("dsseEnvelope") if "dsseEnvelope" in obj else obj
    if isinstance(envelope_obj, dict) and "payloadType" in envelope_obj:
        try:
            return attestation_record(Envelope.from_json(envelope_obj))
        except EnvelopeError as exc:
            raise EntryError(f"not a valid DSSE envelope: {exc}") from exc
    raise EntryError("not a log entry, a DSSE envelope or a sigstore bundle")
