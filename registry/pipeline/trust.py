"""The trust policy in force in a worker process, and what a reload changes.

The file is read at start and again on a reload (SIGHUP to `zoll serve`, or the admin API
`POST /api/v1/admin/trust-policy/reload`, which every worker of every service on the
database hears through NOTIFY). Besides the digest of the file (what Zoll's verification
summaries name), each policy of the file gets a digest of what it says — its part of
the file and the files it refers to (keys, in-toto layouts) — so an image is judged again
only when the policy that applies to its repository changed, not whenever the file did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attest.policy_document import PolicyDocument, parse_with_document
from attest.trust_policy import MAX_POLICY_BYTES, TrustPolicyError, TrustPolicySet

RELOAD_CHANNEL = "zoll_reload"
"""NOTIFY channel on which every worker hears that the trust policy file is to be read again."""


@dataclass(frozen=True)
class PolicyInForce:
    path: Path | None
    policies: TrustPolicySet | None
    sha256: str
    """Of the policy document (`none` without a policy): what verification summaries
    name."""
    parts: dict[str, str] = field(default_factory=dict)
    """Policy name → digest of what that policy says (its part of the file, its files)."""
    document: PolicyDocument | None = None
    """The policy document (the file and every key, layout and link it reads): `sha256`
    is its digest, and auditors get it by that digest (`/api/v1/trust-policies/…`)."""

    def digest_for(self, repository: str) -> str:
        """Which policy applies to `repository`, and what it says: changes exactly when a
        reload changes how the repository's images are judged."""
        policy = self.policies.for_repository(repository) if self.policies else None
        if policy is None:
            return "none"
        return f"{policy.name}:{self.parts.get(policy.name, self.sha256)}"


NO_POLICY = PolicyInForce(None, None, "none")


def load_policy(path: Path | None) -> PolicyInForce:
    """Read and check a trust policy file (blocking: call it in a thread). Raises
    TrustPolicyError or OSError and changes nothing when the file is not a valid policy."""
    if path is None:
        return NO_POLICY
    with path.open("rb") as f:
        raw = f.read(MAX_POLICY_BYTES + 1)
    if len(raw) > MAX_POLICY_BYTES:
        raise TrustPolicyError(f"{path} is larger than {MAX_POLICY_BYTES} bytes")
    policies, document = parse_with_document(path, raw)
    return PolicyInForce(path, policies, document.sha256, _parts(raw, path.parent), document)


def _parts(raw: bytes, base: Path) -> dict[str, str]:
    document = yaml.safe_load(raw)
    if not isinstance(document, dict):
        return {}
    sections = document.get("policies") if "policies" in document else {"default": document}
    parts = {}
    for name, section in (sections or {}).items():
        files = {ref: _file_digest(base, ref) for ref in sorted(set(_strings(section)))}
        said = {"policy": section, "files": {k: v for k, v in files.items() if v}}
        parts[str(name)] = hashlib.sha256(
            json.dumps(said, sort_keys=True, default=str).encode()
        ).hexdigest()
    return parts


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _file_digest(base: Path, ref: str) -> str | None:
    """The digest of the file `ref` names relative to the policy, if it names one."""
    if len(ref) > 1024 or "\n" in ref:
        return None
    try:
        path = base / ref
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return None
