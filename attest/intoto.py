"""in-toto attestation statements (v0.1 and v1) carried in DSSE envelopes.

A statement only says something about an image if one of its subjects names the image's
digest; `Statement.require_subject` is the check every attestation goes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from attest.results import Reason, VerificationFailure
from attest.safejson import loads_object
from registry.oci.digest import Digest

PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_V01: Final = "https://in-toto.io/Statement/v0.1"
STATEMENT_V1: Final = "https://in-toto.io/Statement/v1"
STATEMENT_TYPES: Final = frozenset({STATEMENT_V01, STATEMENT_V1})
COSIGN_SIGN_PREDICATE: Final = "https://sigstore.dev/cosign/sign/v1"
"""What `cosign sign --new-bundle-format` wraps an image signature in."""
MAX_SUBJECTS: Final = 4096


@dataclass(frozen=True)
class Subject:
    name: str
    digest: dict[str, str]


@dataclass(frozen=True)
class Statement:
    """A parsed in-toto statement."""

    type: str
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    @classmethod
    def parse(cls, payload: bytes, payload_type: str | None = PAYLOAD_TYPE) -> Statement:
        if payload_type is not None and payload_type != PAYLOAD_TYPE:
            raise VerificationFailure(
                Reason.UNSUPPORTED_MEDIA_TYPE,
                f"payload type {payload_type!r} is not an in-toto statement",
            )
        body = loads_object(payload, "in-toto statement", signed=True)
        kind = body.get("_type")
        if not isinstance(kind, str) or kind not in STATEMENT_TYPES:
            raise VerificationFailure(Reason.PAYLOAD_INVALID, f"unknown statement _type {kind!r}")
        raw_subjects = body.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise VerificationFailure(Reason.PAYLOAD_INVALID, "statement has no subject")
        if len(raw_subjects) > MAX_SUBJECTS:
            raise VerificationFailure(Reason.TOO_LARGE, "statement has too many subjects")
        subjects = []
        for item in raw_subjects:
            if not isinstance(item, dict) or not isinstance(item.get("digest"), dict):
                raise VerificationFailure(Reason.PAYLOAD_INVALID, "subject without digest")
            digests = {
                str(k).lower(): v.lower() for k, v in item["digest"].items() if isinstance(v, str)
            }
            name = item.get("name", "")
            subjects.append(Subject(name if isinstance(name, str) else "", digests))
        predicate_type = body.get("predicateType")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise VerificationFailure(Reason.PAYLOAD_INVALID, "statement has no predicateType")
        predicate = body.get("predicate", {})
        if predicate is None:
            predicate = {}
        if not isinstance(predicate, dict):
            raise VerificationFailure(Reason.PAYLOAD_INVALID, "predicate must be an object")
        return cls(kind, tuple(subjects), predicate_type, predicate)

    def covers(self, digest: Digest) -> bool:
        return any(s.digest.get(digest.algorithm) == digest.encoded for s in self.subjects)

    def require_subject(self, digest: Digest) -> None:
        if not self.covers(digest):
            named = ", ".join(
                f"{alg}:{value[:16]}…" for s in self.subjects for alg, value in s.digest.items()
            )
            raise VerificationFailure(
                Reason.SUBJECT_MISMATCH, f"statement subjects ({named}) do not include {digest}"
            )
