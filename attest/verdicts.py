"""What a statement says about an image, and which of a signer's statements counts.

Zoll's statements carry a verdict: a VSA's `verificationResult` (PASSED/FAILED), a
hardening result's `result`, a rebuild's `outcome` (reproduced/differs/failed), each with
the time it was reached. A signer may speak about one image many times (a rescan with new
vulnerability data, a new policy): only its latest statement per (subject, predicate type)
counts, so a later FAILED revokes an earlier PASSED. "Latest" is the highest log index
where the log is known, and the signed time otherwise; a node logs what it signs at once,
so both give the same order for its own statements, and neither can be forged by whoever
merely re-attaches an old statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from attest.statements import HARDENING_V1, REBUILD_V1, VSA_V1

VERDICT_FIELDS: Final = {
    VSA_V1: ("vsa", "verificationResult", "timeVerified"),
    HARDENING_V1: ("hardening", "result", "timeEvaluated"),
    REBUILD_V1: ("rebuild", "outcome", "timeFinished"),
}
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class DurationError(ValueError):
    pass


def parse_duration(value: str | int | float) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w`, or a number of seconds."""
    if isinstance(value, int | float):
        if value <= 0:
            raise DurationError("a duration must be positive")
        return timedelta(seconds=value)
    match = _DURATION.match(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise DurationError(f"{value!r} is not a duration like 30d, 12h, 90m or 45s")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time as statements write it (`Z` or an offset; none: UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Verdict:
    kind: str
    predicate_type: str
    value: str
    time: datetime | None
    subjects: tuple[tuple[str, str], ...]
    """(name, sha256 hex) of each subject."""


def verdict_of(statement: Mapping[str, Any]) -> Verdict | None:
    """The verdict a Zoll statement states, or None for other statements."""
    predicate_type = statement.get("predicateType")
    fields = VERDICT_FIELDS.get(predicate_type) if isinstance(predicate_type, str) else None
    predicate = statement.get("predicate")
    if fields is None or not isinstance(predicate, dict) or not isinstance(predicate_type, str):
        return None
    kind, value_field, time_field = fields
    value = predicate.get(value_field)
    if not isinstance(value, str):
        return None
    subjects = []
    for item in statement.get("subject") or []:
        if isinstance(item, dict) and isinstance(item.get("digest"), dict):
            sha = item["digest"].get("sha256")
            if isinstance(sha, str):
                subjects.append((str(item.get("name", "")), sha))
    return Verdict(
        kind, predicate_type, value, parse_time(predicate.get(time_field)), tuple(subjects)
    )


def lookup(document: Any, path: str) -> Any:
    """`a.b.c` in nested mappings (None when a step is missing)."""
    for part in path.split("."):
        if not isinstance(document, Mapping):
            return None
        document = document.get(part)
    return document


def content_problems(predicate: Mapping[str, Any], where: Mapping[str, Any]) -> list[str]:
    """Why `predicate` does not meet `where` ({dotted path: value or list of values})."""
    problems = []
    for path, wanted in where.items():
        found = lookup(predicate, path)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if found not in allowed:
            shown = " or ".join(repr(a) for a in allowed)
            problems.append(f"{path} is {found!r}, not {shown}")
    return problems


def too_old(when: datetime | None, max_age: timedelta | None, now: datetime) -> str | None:
    if max_age is None:
        return None
    if when is None:
        return "the statement names no time, so its age cannot be checked"
    if now - when > max_age:
        return f"stated {when:%Y-%m-%d %H:%M} UTC, older than {max_age}"
    return None


@dataclass(frozen=True)
class Candidate:
    """A verified statement by a known signer, with what orders it."""

    signer: str
    item: Any
    time: datetime | None
    log_index: int | None = None


def latest_per_signer(candidates: Iterable[Candidate]) -> dict[str, Candidate]:
    """Each signer's latest statement (signed time, then log index)."""
    best: dict[str, Candidate] = {}
    floor = datetime.min.replace(tzinfo=UTC)
    for c in candidates:
        key = (c.time or floor, c.log_index if c.log_index is not None else -1)
        current = best.get(c.signer)
        if current is None or key > (
            current.time or floor,
            current.log_index if current.log_index is not None else -1,
        ):
            best[c.signer] = c
    return best


def says(kind: str) -> Sequence[str]:
    """Verdict values that count as a yes for a quorum `says`."""
    return {"passed": ("PASSED",), "reproduced": ("reproduced",)}[kind]
