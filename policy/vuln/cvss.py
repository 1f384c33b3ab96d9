"""CVSS base scores from vector strings (v2, v3.0, v3.1 computed here; v4 by `cvss`).

OSV records carry vectors, not scores, so the score that decides "critical" or
"high" is computed from the vector. An invalid vector raises `CvssError` and the
caller falls back to the database's own severity text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cvss import CVSS4  # type: ignore[import-untyped]
from cvss.exceptions import CVSSError  # type: ignore[import-untyped]

CvssVersion = Literal["2.0", "3.0", "3.1", "4.0"]


class CvssError(ValueError):
    """A vector string that is not a valid CVSS base vector."""


@dataclass(frozen=True, slots=True)
class CvssScore:
    version: CvssVersion
    vector: str
    score: float

    @property
    def rating(self) -> Literal["critical", "high", "medium", "low"]:
        """The qualitative rating of the score (v2 has no "critical")."""
        if self.version == "2.0":
            return "high" if self.score >= 7.0 else "medium" if self.score >= 4.0 else "low"
        if self.score >= 9.0:
            return "critical"
        if self.score >= 7.0:
            return "high"
        return "medium" if self.score >= 4.0 else "low"


def _metrics(
    parts: list[str], required: dict[str, dict[str, float]], vector: str
) -> dict[str, str]:
    seen: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition(":")
        if not sep or not value:
            raise CvssError(f"malformed metric {part!r} in {vector!r}")
        if key in seen:
            raise CvssError(f"metric {key} given twice in {vector!r}")
        seen[key] = value
    for key, values in required.items():
        if key not in seen:
            raise CvssError(f"base metric {key} missing from {vector!r}")
        if seen[key] not in values:
            raise CvssError(f"invalid value {key}:{seen[key]} in {vector!r}")
    return seen


_V3 = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "PR": {"N": 0.85, "L": 0.62, "H": 0.27},
    "UI": {"N": 0.85, "R": 0.62},
    "S": {"U": 0.0, "C": 0.0},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_V3_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}


def _roundup_31(value: float) -> float:
    """CVSS 3.1's Roundup: the smallest one-decimal number >= value, float-safe."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000.0
    return (math.floor(scaled / 10_000) + 1) / 10.0


def _roundup_30(value: float) -> float:
    return math.ceil(value * 10) / 10.0


def score_v3(vector: str) -> CvssScore:
    head, _, rest = vector.partition("/")
    if head not in ("CVSS:3.0", "CVSS:3.1") or not rest:
        raise CvssError(f"not a CVSS v3 vector: {vector!r}")
    m = _metrics(rest.split("/"), _V3, vector)
    changed = m["S"] == "C"
    iss = 1 - (1 - _V3["C"][m["C"]]) * (1 - _V3["I"][m["I"]]) * (1 - _V3["A"][m["A"]])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    pr = (_V3_PR_CHANGED if changed else _V3["PR"])[m["PR"]]
    exploitability = 8.22 * _V3["AV"][m["AV"]] * _V3["AC"][m["AC"]] * pr * _V3["UI"][m["UI"]]
    roundup = _roundup_31 if head == "CVSS:3.1" else _roundup_30
    if impact <= 0:
        score = 0.0
    elif changed:
        score = roundup(min(1.08 * (impact + exploitability), 10))
    else:
        score = roundup(min(impact + exploitability, 10))
    version: CvssVersion = "3.1" if head == "CVSS:3.1" else "3.0"
    return CvssScore(version, vector, score)


_V2 = {
    "AV": {"L": 0.395, "A": 0.646, "N": 1.0},
    "AC": {"H": 0.35, "M": 0.61, "L": 0.71},
    "Au": {"M": 0.45, "S": 0.56, "N": 0.704},
    "C": {"N": 0.0, "P": 0.275, "C": 0.660},
    "I": {"N": 0.0, "P": 0.275, "C": 0.660},
    "A": {"N": 0.0, "P": 0.275, "C": 0.660},
}


def score_v2(vector: str) -> CvssScore:
    text = vector[1:-1] if vector.startswith("(") and vector.endswith(")") else vector
    text = text.removeprefix("CVSS:2.0/")
    m = _metrics(text.split("/"), _V2, vector)
    impact = 10.41 * (1 - (1 - _V2["C"][m["C"]]) * (1 - _V2["I"][m["I"]]) * (1 - _V2["A"][m["A"]]))
    exploitability = 20 * _V2["AV"][m["AV"]] * _V2["AC"][m["AC"]] * _V2["Au"][m["Au"]]
    f_impact = 0.0 if impact == 0 else 1.176
    raw = ((0.6 * impact) + (0.4 * exploitability) - 1.5) * f_impact
    score = math.floor(raw * 10 + 0.5 + 1e-9) / 10.0  # round half up to one decimal
    return CvssScore("2.0", vector, max(score, 0.0))


def score_v4(vector: str) -> CvssScore:
    if not vector.startswith("CVSS:4.0/"):
        raise CvssError(f"not a CVSS v4 vector: {vector!r}")
    try:
        parsed = CVSS4(vector)
    except CVSSError as exc:
        raise CvssError(f"invalid CVSS v4 vector {vector!r}: {exc}") from None
    return CvssScore("4.0", vector, float(parsed.base_score))


def score(vector: str) -> CvssScore:
    """Score any CVSS base vector, picking the version from its prefix."""
    text = vector.strip()
    if text.startswith("CVSS:4.0/"):
        return score_v4(text)
    if text.startswith("CVSS:3."):
        return score_v3(text)
    return score_v2(text)
