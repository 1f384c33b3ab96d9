"""One severity per finding: computed CVSS first, the database's own word second.

Preference: CVSS v3.x, then v4.0, then v2 (v3 is what most advisories and scanners
report, so results stay comparable); the per-package severity of an `affected[]`
entry beats the record-wide one. Without a usable vector the textual severity of the
database (GHSA "MODERATE", Debian urgency "high", …) is mapped; else "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policy.packages import Severity
from policy.vuln.cvss import CvssError, CvssScore, score
from policy.vuln.osv import Advisory, Affected, SeverityVector

_TYPE_ORDER = {"CVSS_V3": 0, "CVSS_V4": 1, "CVSS_V2": 2}
_TEXT = {
    "critical": "critical",
    "high": "high",
    "important": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "negligible": "low",
    "unimportant": "low",
    "minor": "low",
}


@dataclass(frozen=True, slots=True)
class Assessment:
    severity: Severity
    cvss: CvssScore | None


def _best_cvss(vectors: Iterable[SeverityVector]) -> CvssScore | None:
    ranked = sorted(
        (v for v in vectors if v.type in _TYPE_ORDER), key=lambda v: _TYPE_ORDER[v.type]
    )
    for vector in ranked:
        try:
            return score(vector.score)
        except CvssError:
            continue
    return None


def text_severity(text: str | None) -> Severity | None:
    if not text:
        return None
    word = text.strip().lower().split()[0] if text.strip() else ""
    mapped = _TEXT.get(word)
    return mapped if mapped is None else _as_severity(mapped)


def _as_severity(word: str) -> Severity:
    if word == "critical":
        return "critical"
    if word == "high":
        return "high"
    if word == "medium":
        return "medium"
    return "low"


def assess(advisory: Advisory, affected: Iterable[Affected] = ()) -> Assessment:
    """The severity of `advisory` for the package matched through `affected`."""
    entries = list(affected)
    for vectors in (*(a.severity for a in entries), advisory.severity):
        cvss = _best_cvss(vectors)
        if cvss is not None:
            return Assessment(cvss.rating, cvss)
    for text in (*(a.severity_text for a in entries), advisory.severity_text):
        mapped = text_severity(text)
        if mapped is not None:
            return Assessment(mapped, None)
    return Assessment("unknown", None)
