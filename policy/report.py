"""The hardening report: one result per criterion, with evidence, ready to be signed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from policy.catalog import severity_rank
from policy.checks import Status

SCHEMA: Final = "https://zoll.dev/schemas/hardening-report/v1"
"""in-toto predicate type of a signed hardening report."""
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"


class ReportError(ValueError):
    """A JSON document is not a hardening report."""


@dataclass(frozen=True, slots=True)
class CriterionResult:
    id: str
    title: str
    rule: str
    severity: str
    status: Status
    evidence: tuple[str, ...]

    def finding(self, limit: int = 3) -> str:
        """What was found, for a person reading why: the evidence (not the rule, which
        says what should have been found); the rule only when there is no evidence."""
        shown = "; ".join(self.evidence[:limit])
        more = len(self.evidence) - limit
        if more > 0:
            shown += f"; and {more} more"
        return shown or f"expected: {self.rule}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class HardeningReport:
    subject_digest: str
    subject_name: str | None
    catalog_name: str
    catalog_version: str
    catalog_digest: str
    catalog_overrides: tuple[str, ...]
    analyzer_version: str
    analysis_complete: bool
    evaluated_at: str
    results: tuple[CriterionResult, ...]

    def result(self, criterion_id: str) -> CriterionResult:
        for r in self.results:
            if r.id == criterion_id:
                return r
        raise KeyError(criterion_id)

    def failed(self, min_severity: str = "info") -> tuple[CriterionResult, ...]:
        """Failed criteria at `min_severity` or worse."""
        limit = severity_rank(min_severity)
        return tuple(
            r for r in self.results if r.status == "fail" and severity_rank(r.severity) <= limit
        )

    @property
    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "not_applicable": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "subject": {"digest": self.subject_digest, "name": self.subject_name},
            "catalog": {
                "name": self.catalog_name,
                "version": self.catalog_version,
                "digest": self.catalog_digest,
                "overrides": list(self.catalog_overrides),
            },
            "analyzer": self.analyzer_version,
            "analysis_complete": self.analysis_complete,
            "evaluated_at": self.evaluated_at,
            "summary": self.counts,
            "results": [r.to_json() for r in self.results],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Any) -> HardeningReport:
        try:
            if data.get("schema") != SCHEMA:
                raise ReportError(f"not a hardening report (schema {data.get('schema')!r})")
            catalog, subject = data["catalog"], data["subject"]
            results = tuple(
                CriterionResult(
                    id=str(r["id"]),
                    title=str(r["title"]),
                    rule=str(r["rule"]),
                    severity=str(r["severity"]),
                    status=_status(r["status"]),
                    evidence=tuple(str(e) for e in r["evidence"]),
                )
                for r in data["results"]
            )
            return cls(
                subject_digest=str(subject["digest"]),
                subject_name=subject.get("name"),
                catalog_name=str(catalog["name"]),
                catalog_version=str(catalog["version"]),
                catalog_digest=str(catalog["digest"]),
                catalog_overrides=tuple(catalog.get("overrides", ())),
                analyzer_version=str(data["analyzer"]),
                analysis_complete=bool(data["analysis_complete"]),
                evaluated_at=str(data["evaluated_at"]),
                results=results,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReportError(f"malformed hardening report: missing or bad {exc}") from exc


def _status(value: Any) -> Status:
    if value == "pass":
        return "pass"
    if value == "fail":
        return "fail"
    if value == "not_applicable":
        return "not_applicable"
    raise ReportError(f"unknown result status {value!r}")
