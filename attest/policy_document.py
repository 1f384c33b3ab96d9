"""The trust policy document: a policy file and every file it refers to, as one
canonical JSON document whose SHA-256 Zoll's VSAs name.

A policy file alone does not decide a verdict: the keys, in-toto layouts and links it
refers to do too. Hashing the YAML alone would let a swapped key file change every
verdict under an unchanged digest. The document holds each file's exact bytes, so an
auditor who fetches it by digest (`/api/v1/trust-policies/{digest}`) sees everything
that was trusted, and can re-run `zoll verify image` with those files.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import rfc8785

from attest.trust_policy import TrustPolicyError, TrustPolicySet, recording_reads

SCHEMA: Final = "https://zoll.dev/trust-policy-document/v1"
MAX_POLICY_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class PolicyDocument:
    raw: bytes
    """RFC 8785 canonical JSON: `{"schema", "policy", "files": [{"path", "sha256",
    "content" (base64)}]}`, files sorted by path; `policy` names the policy file."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _name(path: Path, base: Path) -> str:
    """A path relative to the policy's folder, as the policy wrote it when it could."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def document(policy: Path, raw: bytes, reads: list[tuple[Path, bytes]]) -> PolicyDocument:
    base = policy.parent
    files = {policy.name: raw}
    for path, data in reads:
        files.setdefault(_name(path, base), data)
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "policy": policy.name,
        "files": [
            {
                "path": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "content": base64.b64encode(data).decode(),
            }
            for name, data in sorted(files.items())
        ],
    }
    return PolicyDocument(rfc8785.dumps(body))


def load_with_document(path: Path) -> tuple[TrustPolicySet, PolicyDocument]:
    """Load a policy file once, and the document of exactly the bytes that were used."""
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise TrustPolicyError(f"{path} is larger than {MAX_POLICY_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise TrustPolicyError(f"cannot read trust policy {path}: {exc}") from exc
    return parse_with_document(path, raw)


def parse_with_document(path: Path, raw: bytes) -> tuple[TrustPolicySet, PolicyDocument]:
    """The policies in `raw` (the bytes of the file at `path`), and their document."""
    with recording_reads() as reads:
        policies = TrustPolicySet.from_yaml(raw, path.parent)
    return policies, document(path, raw, reads)
