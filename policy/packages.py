"""The two facts the SBOM and vulnerability matching exchange: packages and findings.

The analyzer finds `Package`s in an image's file tree; `policy.vuln` matches them
against advisory data and returns `VulnFinding`s; the evaluation judges those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low", "unknown"]


@dataclass(frozen=True, slots=True)
class Package:
    """One installed piece of software, named the way advisory databases name it.

    `ecosystem` uses OSV's names ("Debian", "Alpine", "PyPI", "npm", "Go", "Maven",
    "Red Hat"); `release` is the distribution release where advisories depend on it
    ("12" for Debian bookworm → OSV "Debian:12", "v3.20" for Alpine). Distribution
    advisories are keyed by the *source* package (dpkg `Source:`, apk origin), kept in
    `source_name` when it differs from `name`.
    """

    ecosystem: str
    name: str
    version: str
    purl: str
    release: str | None = None
    source_name: str | None = None
    locations: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()

    @property
    def advisory_name(self) -> str:
        """The name advisories use for this package."""
        return self.source_name or self.name


@dataclass(frozen=True, slots=True)
class VulnFinding:
    """A known vulnerability affecting a package, and whether a VEX statement clears it."""

    id: str
    package: Package
    severity: Severity
    summary: str = ""
    aliases: tuple[str, ...] = ()
    cvss_score: float | None = None
    cvss_vector: str | None = None
    fixed_versions: tuple[str, ...] = ()
    vex_status: Literal["not_affected", "fixed", "under_investigation", "affected"] | None = None
    vex_justification: str | None = None
    undecided_reason: str | None = None
    """Set when the package version could not be compared with the advisory's ranges
    (unparseable version, unknown ecosystem): reported in case it applies, never dropped."""

    @property
    def suppressed(self) -> bool:
        """Whether a VEX statement says this finding does not apply."""
        return self.vex_status in ("not_affected", "fixed")

    def to_json(self) -> dict[str, Any]:
        """What the registry stores and shows for a finding (the image page, badges)."""
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "severity": self.severity,
            "summary": self.summary,
            "package": {
                "name": self.package.name,
                "version": self.package.version,
                "ecosystem": self.package.ecosystem,
                "purl": self.package.purl,
            },
            "cvss_score": self.cvss_score,
            "fixed_versions": list(self.fixed_versions),
            "vex_status": self.vex_status,
            "vex_justification": self.vex_justification,
            "suppressed": self.suppressed,
            "undecided_reason": self.undecided_reason,
        }
