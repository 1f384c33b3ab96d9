"""The criteria catalog: shipped YAML, versioned, overridable per namespace.

A namespace override may switch criteria off, change their severity and tune their
parameters, but never their rule, id or check; that keeps every report comparable.
The effective catalog has a digest (SHA-256 of its canonical JSON) that reports name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, cast

import yaml

Severity = Literal["critical", "high", "medium", "low", "info"]
Subject = Literal["image", "chart"]
SUBJECTS: Final[tuple[Subject, ...]] = ("image", "chart")
SEVERITIES: Final[tuple[Severity, ...]] = ("critical", "high", "medium", "low", "info")
_CRITERION_KEYS: Final = frozenset(
    {
        "id",
        "title",
        "rule",
        "severity",
        "check",
        "rationale",
        "sources",
        "params",
        "enabled",
        "applies_to",
    }
)
_OVERRIDE_KEYS: Final = frozenset({"enabled", "severity", "params"})


class CatalogError(ValueError):
    """A catalog or override file is invalid; the message names the file and field."""


def severity_rank(severity: str) -> int:
    """0 for critical … 4 for info (lower is worse)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass(frozen=True, slots=True)
class Source:
    """A framework and the place in it that requires a criterion."""

    framework: str
    ref: str


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    title: str
    rule: str
    severity: Severity
    check: str
    rationale: str
    sources: tuple[Source, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    applies_to: Subject = "image"
    """What the criterion judges: an image (its config and file tree) or a Helm chart (the
    workloads it renders)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "rule": self.rule,
            "severity": self.severity,
            "check": self.check,
            "rationale": self.rationale,
            "sources": [{"framework": s.framework, "ref": s.ref} for s in self.sources],
            "params": dict(self.params),
            "enabled": self.enabled,
        }
        if self.applies_to != "image":  # image criteria keep the digest they always had
            out["applies_to"] = self.applies_to
        return out


@dataclass(frozen=True, slots=True)
class Catalog:
    name: str
    version: str
    criteria: tuple[Criterion, ...]
    overrides: tuple[str, ...] = ()

    def get(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(criterion_id)

    @property
    def enabled(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.enabled)

    def for_subject(self, subject: Subject) -> tuple[Criterion, ...]:
        """The criteria that judge images, or those that judge charts."""
        return tuple(c for c in self.criteria if c.applies_to == subject)

    def to_json(self) -> dict[str, Any]:
        return {
            "catalog": self.name,
            "version": self.version,
            "overrides": list(self.overrides),
            "criteria": [c.to_json() for c in self.criteria],
        }

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _load_yaml(source: str | Path | Mapping[str, Any], what: str) -> tuple[dict[str, Any], str]:
    if isinstance(source, Mapping):
        return dict(source), what
    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return data, str(path)


def _severity(value: Any, where: str) -> Severity:
    if value not in SEVERITIES:
        raise CatalogError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    return cast(Severity, value)


def _criterion(obj: Any, where: str) -> Criterion:
    if not isinstance(obj, dict):
        raise CatalogError(f"{where}: a criterion must be a mapping")
    unknown = set(obj) - _CRITERION_KEYS
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("id", "title", "rule", "check", "rationale"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise CatalogError(f"{where}: {key} must be a non-empty string")
    where = f"{where} ({obj['id']})"
    sources = obj.get("sources")
    if not isinstance(sources, list) or not sources:
        raise CatalogError(f"{where}: sources must be a non-empty list")
    parsed = []
    for s in sources:
        if not isinstance(s, dict) or not isinstance(s.get("framework"), str):
            raise CatalogError(f"{where}: each source needs a framework and a ref")
        parsed.append(Source(s["framework"], str(s.get("ref", ""))))
    params = obj.get("params") or {}
    if not isinstance(params, dict):
        raise CatalogError(f"{where}: params must be a mapping")
    applies_to = obj.get("applies_to", "image")
    if applies_to not in SUBJECTS:
        raise CatalogError(f"{where}: applies_to must be one of {', '.join(SUBJECTS)}")
    return Criterion(
        id=obj["id"],
        title=obj["title"],
        rule=" ".join(obj["rule"].split()),
        severity=_severity(obj.get("severity"), where),
        check=obj["check"],
        rationale=" ".join(obj["rationale"].split()),
        sources=tuple(parsed),
        params=params,
        enabled=bool(obj.get("enabled", True)),
        applies_to=applies_to,
    )


def parse_catalog(data: Mapping[str, Any], where: str = "catalog") -> Catalog:
    name, version = data.get("catalog"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise CatalogError(f"{where}: 'catalog' and 'version' must be strings")
    items = data.get("criteria")
    if not isinstance(items, list) or not items:
        raise CatalogError(f"{where}: 'criteria' must be a non-empty list")
    criteria = [_criterion(obj, f"{where} criteria[{i}]") for i, obj in enumerate(items)]
    from policy.chart.checks import CHART_CHECKS  # checks do not import the catalog: no cycle
    from policy.checks import CHECKS

    known = {"image": set(CHECKS), "chart": set(CHART_CHECKS)}
    for subject in SUBJECTS:
        unknown_checks = sorted(
            {c.check for c in criteria if c.applies_to == subject} - known[subject]
        )
        if unknown_checks:
            raise CatalogError(
                f"{where}: unknown {subject} checks {unknown_checks} "
                f"(known: {sorted(known[subject])})"
            )
    ids = [c.id for c in criteria]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogError(f"{where}: duplicate criterion ids {duplicates}")
    return Catalog(name, version, tuple(criteria))


def _same_shape(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, int | float):
        return isinstance(new, int | float)
    return type(old) is type(new)


def apply_override(catalog: Catalog, data: Mapping[str, Any], where: str) -> Catalog:
    """The catalog with one namespace override applied."""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{where}: an override needs a 'name'")
    unknown_top = set(data) - {"name", "criteria", "description"}
    if unknown_top:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown_top)}")
    changes = data.get("criteria") or {}
    if not isinstance(changes, dict):
        raise CatalogError(f"{where}: 'criteria' must map criterion ids to changes")
    known = {c.id: c for c in catalog.criteria}
    updated = dict(known)
    for cid, change in changes.items():
        spot = f"{where} criteria.{cid}"
        if cid not in known:
            raise CatalogError(f"{spot}: no criterion {cid!r} in {catalog.name} {catalog.version}")
        if not isinstance(change, dict):
            raise CatalogError(f"{spot}: must be a mapping")
        unknown = set(change) - _OVERRIDE_KEYS
        if unknown:
            raise CatalogError(
                f"{spot}: only enabled, severity and params may be overridden, "
                f"not {sorted(unknown)}"
            )
        criterion = known[cid]
        if "enabled" in change:
            if not isinstance(change["enabled"], bool):
                raise CatalogError(f"{spot}: enabled must be true or false")
            criterion = replace(criterion, enabled=change["enabled"])
        if "severity" in change:
            criterion = replace(criterion, severity=_severity(change["severity"], spot))
        if "params" in change:
            params = change["params"]
            if not isinstance(params, dict):
                raise CatalogError(f"{spot}: params must be a mapping")
            merged = dict(criterion.params)
            for key, value in params.items():
                if key not in merged:
                    raise CatalogError(
                        f"{spot}: unknown parameter {key!r} (known: {sorted(merged) or 'none'})"
                    )
                if not _same_shape(merged[key], value):
                    raise CatalogError(
                        f"{spot}: parameter {key!r} must be a {type(merged[key]).__name__}"
                    )
                merged[key] = value
            criterion = replace(criterion, params=merged)
        updated[cid] = criterion
    return Catalog(
        catalog.name,
        catalog.version,
        tuple(updated[c.id] for c in catalog.criteria),
        (*catalog.overrides, name),
    )


def default_catalog_text() -> str:
    return resources.files("policy").joinpath("criteria.yaml").read_text(encoding="utf-8")


def load_catalog(
    overrides: Sequence[str | Path | Mapping[str, Any]] = (),
    *,
    base: str | Path | Mapping[str, Any] | None = None,
) -> Catalog:
    """The shipped catalog (or `base`) with namespace overrides applied in order."""
    if base is None:
        data = yaml.safe_load(default_catalog_text())
        catalog = parse_catalog(data, "policy/criteria.yaml")
    else:
        data, where = _load_yaml(base, "catalog")
        catalog = parse_catalog(data, where)
    for i, override in enumerate(overrides):
        data, where = _load_yaml(override, f"override[{i}]")
        catalog = apply_override(catalog, data, where)
    return catalog
