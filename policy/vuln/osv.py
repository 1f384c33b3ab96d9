"""OSV records (https://ossf.github.io/osv-schema/) parsed into typed advisories.

Only what matching needs is kept: the affected packages with their ranges and
explicit versions, severities, aliases and the `modified`/`withdrawn` times that
decide which copy of a record is current. Anything malformed raises
`OsvFormatError` naming the field, so one broken record never passes silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from policy.vuln.errors import OsvFormatError

EventKind = Literal["introduced", "fixed", "last_affected", "limit"]
_EVENT_KINDS: tuple[EventKind, ...] = ("introduced", "fixed", "last_affected", "limit")
_MAX_SUMMARY = 300


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM, SEMVER or GIT
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class SeverityVector:
    type: str  # CVSS_V2, CVSS_V3, CVSS_V4, Ubuntu, ...
    score: str


@dataclass(frozen=True, slots=True)
class Affected:
    """One `affected[]` entry: a package in an ecosystem (maybe one release of it)."""

    ecosystem: str
    release: str | None
    name: str
    purl: str | None
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: tuple[SeverityVector, ...]
    severity_text: str | None

    @property
    def key_name(self) -> str:
        return normalize_name(self.ecosystem, self.name)

    def fixed_versions(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for rng in self.ranges:
            if rng.type == "GIT":
                continue
            for event in rng.events:
                if event.kind == "fixed":
                    seen.setdefault(event.version)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    modified: datetime
    withdrawn: datetime | None
    aliases: tuple[str, ...]
    summary: str
    severity: tuple[SeverityVector, ...]
    severity_text: str | None
    affected: tuple[Affected, ...]


_PYPI_SEP = re.compile(r"[-_.]+")


def normalize_name(ecosystem: str, name: str) -> str:
    """Names as the ecosystem compares them (PyPI per PEP 503; others verbatim)."""
    if ecosystem == "PyPI":
        return _PYPI_SEP.sub("-", name).lower()
    return name


def split_ecosystem(value: str) -> tuple[str, str | None]:
    """`Debian:12` → (`Debian`, `12`), `Alpine:v3.20` → (`Alpine`, `v3.20`), `npm` → no release."""
    base, sep, release = value.partition(":")
    return base, (release if sep and release else None)


def parse_time(value: object, field: str, source: str) -> datetime:
    if not isinstance(value, str):
        raise OsvFormatError(source, f"{field} must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise OsvFormatError(source, f"{field} is not an RFC 3339 timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str_list(value: object, field: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OsvFormatError(source, f"{field} must be a list of strings")
    return tuple(value)


def _obj(value: object, field: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OsvFormatError(source, f"{field} must be an object")
    return value


def _severity(value: object, field: str, source: str) -> tuple[SeverityVector, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OsvFormatError(source, f"{field} must be a list")
    out = []
    for i, entry in enumerate(value):
        entry = _obj(entry, f"{field}[{i}]", source)
        kind, score = entry.get("type"), entry.get("score")
        if not isinstance(kind, str) or not isinstance(score, str):
            raise OsvFormatError(source, f"{field}[{i}] needs string type and score")
        out.append(SeverityVector(kind, score))
    return tuple(out)


def _severity_text(*holders: dict[str, Any]) -> str | None:
    """The database's own word for severity (GHSA `severity`, Debian `urgency`, …)."""
    for holder in holders:
        for key in ("severity", "urgency", "cvss_severity"):
            value = holder.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _ranges(value: object, field: str, source: str) -> tuple[Range, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OsvFormatError(source, f"{field} must be a list")
    out = []
    for i, entry in enumerate(value):
        entry = _obj(entry, f"{field}[{i}]", source)
        kind = entry.get("type")
        if kind not in ("ECOSYSTEM", "SEMVER", "GIT"):
            raise OsvFormatError(source, f"{field}[{i}].type must be ECOSYSTEM, SEMVER or GIT")
        events_raw = entry.get("events")
        if not isinstance(events_raw, list) or not events_raw:
            raise OsvFormatError(source, f"{field}[{i}].events must be a non-empty list")
        events = []
        for j, ev in enumerate(events_raw):
            ev = _obj(ev, f"{field}[{i}].events[{j}]", source)
            found = [(k, ev[k]) for k in _EVENT_KINDS if k in ev]
            if len(found) != 1 or not isinstance(found[0][1], str) or not found[0][1]:
                raise OsvFormatError(
                    source,
                    f"{field}[{i}].events[{j}] needs exactly one of {', '.join(_EVENT_KINDS)}",
                )
            events.append(Event(found[0][0], found[0][1]))
        out.append(Range(kind, tuple(events)))
    return tuple(out)


def parse_advisory(data: object, source: str = "<record>") -> Advisory:
    """Validate one decoded OSV record and keep what matching needs."""
    record = _obj(data, "record", source)
    if not record:
        raise OsvFormatError(source, "record is empty")
    rid = record.get("id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 200:
        raise OsvFormatError(source, "id must be a non-empty string")
    source = f"{source} ({rid})" if rid not in source else source
    modified = parse_time(record.get("modified"), "modified", source)
    withdrawn_raw = record.get("withdrawn")
    withdrawn = parse_time(withdrawn_raw, "withdrawn", source) if withdrawn_raw else None
    aliases = _str_list(record.get("aliases"), "aliases", source)
    upstream = _str_list(record.get("upstream"), "upstream", source)
    summary = record.get("summary") or ""
    details = record.get("details") or ""
    if not isinstance(summary, str) or not isinstance(details, str):
        raise OsvFormatError(source, "summary and details must be strings")
    if not summary and details:
        summary = details.strip().splitlines()[0] if details.strip() else ""
    affected_raw = record.get("affected")
    if affected_raw is None:
        affected_raw = []
    if not isinstance(affected_raw, list):
        raise OsvFormatError(source, "affected must be a list")
    affected = []
    for i, entry in enumerate(affected_raw):
        entry = _obj(entry, f"affected[{i}]", source)
        package = _obj(entry.get("package"), f"affected[{i}].package", source)
        ecosystem, name = package.get("ecosystem"), package.get("name")
        purl = package.get("purl")
        if not package:
            continue  # OSV allows affected entries without a package (GIT-only data)
        if not isinstance(ecosystem, str) or not isinstance(name, str) or not name:
            raise OsvFormatError(source, f"affected[{i}].package needs ecosystem and name")
        if purl is not None and not isinstance(purl, str):
            raise OsvFormatError(source, f"affected[{i}].package.purl must be a string")
        base, release = split_ecosystem(ecosystem)
        affected.append(
            Affected(
                ecosystem=base,
                release=release,
                name=name,
                purl=purl,
                ranges=_ranges(entry.get("ranges"), f"affected[{i}].ranges", source),
                versions=_str_list(entry.get("versions"), f"affected[{i}].versions", source),
                severity=_severity(entry.get("severity"), f"affected[{i}].severity", source),
                severity_text=_severity_text(
                    _obj(entry.get("ecosystem_specific"), "ecosystem_specific", source),
                    _obj(entry.get("database_specific"), "database_specific", source),
                ),
            )
        )
    all_aliases = tuple(dict.fromkeys(a for a in (*aliases, *upstream) if a != rid))
    return Advisory(
        id=rid,
        modified=modified,
        withdrawn=withdrawn,
        aliases=all_aliases,
        summary=summary.strip()[:_MAX_SUMMARY],
        severity=_severity(record.get("severity"), "severity", source),
        severity_text=_severity_text(
            _obj(record.get("database_specific"), "database_specific", source)
        ),
        affected=tuple(affected),
    )
