"""No silent exemptions: which rule lets an artifact the pipeline does not judge be served.

Signatures, attestations and SBOMs *about* an image are served beside it (their subject is
what gets judged). Any other artifact — a type the pipeline has no analysis for — is held
in an `enforce` namespace unless the namespace's policy names its type in
`allow_artifact_types`; in `warn`/`off` namespaces it is served, and its status says so.
Every such row carries the rule that decided it in its reasons.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from registry.config import NamespaceRule


@dataclass(frozen=True, slots=True)
class ArtifactRule:
    state: str
    """exempt (served) or quarantined (held)"""
    reasons: list[str]
    artifact_type: str | None
    """Set for artifacts that stand on their own (decided again when policies change)."""


def attachment(subject: str) -> ArtifactRule:
    about = f" of {subject}" if subject else ""
    return ArtifactRule(
        "exempt",
        [
            f"attachment{about}: signatures, attestations and SBOMs are served beside the "
            "artifact they are about, which is judged itself"
        ],
        None,
    )


def decide_artifact(rule: NamespaceRule, kind: str, evaluated: bool) -> ArtifactRule:
    """The state of a stand-alone artifact of type `kind` in the namespace of `rule`."""
    where = f"namespace {rule.prefix!r}"
    allowed = next((p for p in rule.allow_artifact_types if fnmatch.fnmatchcase(kind, p)), None)
    if allowed is not None:
        return ArtifactRule(
            "exempt",
            [
                f"artifact type {kind} is not judged by the pipeline; served because {where} "
                f"allows it (allow_artifact_types: {allowed})"
            ],
            kind,
        )
    if rule.admission != "enforce" or not evaluated:
        why = f"admission is {rule.admission}" if evaluated else "the pipeline is off"
        return ArtifactRule(
            "exempt",
            [f"artifact type {kind} is not judged by the pipeline; served because {where} {why}"],
            kind,
        )
    return ArtifactRule(
        "quarantined",
        [
            f"artifact type {kind} is not judged by the pipeline and {where} (admission: "
            "enforce) does not allow it: list it in allow_artifact_types to serve it"
        ],
        kind,
    )
