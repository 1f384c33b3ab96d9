"""Decide whether a package version lies in an OSV advisory's affected ranges.

Ranges are evaluated as the OSV schema specifies: events sorted by version,
`introduced` opens, `fixed` (>=) and `last_affected` (>) close, a `limit` caps.
When a version cannot be compared (unknown ecosystem, unparseable version) the
verdict is `None` with a reason: the finding is reported as undecided, never dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policy.packages import Package, VulnFinding
from policy.vuln.osv import Advisory, Affected, Event, normalize_name
from policy.vuln.severity import assess
from policy.vuln.versions import Comparator, UnknownEcosystem, VersionError, comparator, semver


@dataclass(frozen=True, slots=True)
class Verdict:
    affected: bool | None
    reason: str = ""


def applies_to(affected: Affected, package: Package) -> bool:
    """Same ecosystem, same release (when both name one), same advisory package name."""
    if affected.ecosystem != package.ecosystem:
        return False
    if None not in (affected.release, package.release) and affected.release != package.release:
        return False
    return affected.key_name == normalize_name(package.ecosystem, package.advisory_name)


def _in_range(version: str, events: Sequence[Event], cmp: Comparator) -> bool:
    def order(a: Event, b: Event) -> int:
        if a.version == "0" and a.kind == "introduced":
            return 0 if b.version == "0" and b.kind == "introduced" else -1
        if b.version == "0" and b.kind == "introduced":
            return 1
        return cmp(a.version, b.version)

    affected = False
    limits = [e for e in events if e.kind == "limit"]
    for event in sorted((e for e in events if e.kind != "limit"), key=functools.cmp_to_key(order)):
        if event.kind == "introduced":
            if event.version == "0" or cmp(version, event.version) >= 0:
                affected = True
        elif event.kind == "fixed":
            if cmp(version, event.version) >= 0:
                affected = False
        elif event.kind == "last_affected" and cmp(version, event.version) > 0:
            affected = False
    if affected and limits and not any(cmp(version, e.version) < 0 for e in limits):
        return False
    return affected


def evaluate(affected: Affected, version: str) -> Verdict:
    """Is `version` affected according to this `affected[]` entry?"""
    if version in affected.versions:
        return Verdict(True, "listed in affected versions")
    undecided: list[str] = []
    for rng in affected.ranges:
        if rng.type == "GIT":
            continue  # commit ranges say nothing about package versions
        cmp: Comparator
        try:
            if rng.type == "SEMVER":
                cmp = semver.compare_go if affected.ecosystem == "Go" else semver.compare
            else:
                cmp = comparator(affected.ecosystem)
            if _in_range(version, rng.events, cmp):
                return Verdict(True, f"in {rng.type} range")
        except (VersionError, UnknownEcosystem) as exc:
            undecided.append(str(exc))
    if undecided:
        return Verdict(None, "cannot decide: " + "; ".join(dict.fromkeys(undecided)))
    return Verdict(False)


def findings_for(advisory: Advisory, packages: Iterable[Package]) -> list[VulnFinding]:
    """The findings `advisory` yields for `packages` (withdrawn advisories yield none)."""
    if advisory.withdrawn is not None:
        return []
    out = []
    for package in packages:
        entries = [a for a in advisory.affected if applies_to(a, package)]
        if not entries:
            continue
        verdicts = [(a, evaluate(a, package.version)) for a in entries]
        hits = [a for a, v in verdicts if v.affected]
        reasons = [v.reason for _, v in verdicts if v.affected is None]
        if not hits and not reasons:
            continue
        basis = hits or [a for a, v in verdicts if v.affected is None]
        assessment = assess(advisory, basis)
        fixed = tuple(dict.fromkeys(f for a in basis for f in a.fixed_versions()))
        out.append(
            VulnFinding(
                id=advisory.id,
                package=package,
                severity=assessment.severity,
                summary=advisory.summary,
                aliases=advisory.aliases,
                cvss_score=assessment.cvss.score if assessment.cvss else None,
                cvss_vector=assessment.cvss.vector if assessment.cvss else None,
                fixed_versions=fixed,
                undecided_reason=None if hits else "; ".join(reasons),
            )
        )
    return out


def match_advisories(
    advisories: Iterable[Advisory], packages: Sequence[Package]
) -> list[VulnFinding]:
    """Findings of many advisories for many packages, looking packages up by name.

    Each advisory is only checked against the packages its affected entries name, so
    the cost follows the number of candidate pairs, not advisories × packages.
    """
    by_key: dict[tuple[str, str], list[Package]] = {}
    for package in packages:
        key = (package.ecosystem, normalize_name(package.ecosystem, package.advisory_name))
        by_key.setdefault(key, []).append(package)
    out: list[VulnFinding] = []
    for advisory in advisories:
        candidates: dict[int, Package] = {}
        for affected in advisory.affected:
            for package in by_key.get((affected.ecosystem, affected.key_name), ()):
                candidates.setdefault(id(package), package)
        if candidates:
            out.extend(findings_for(advisory, list(candidates.values())))
    return out
