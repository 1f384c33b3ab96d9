"""Hardening criteria: analyse images, build SBOMs, match vulnerabilities, decide admission.

Works on OCI content through `registry.oci.reader.ContentReader` and imports nothing
else of the project. The registry's entry points:

- `analyze_image(reader, manifest_digest, limits) -> ImageAnalysis`
- `build_sbom(analysis) -> dict` (CycloneDX 1.6), `spdx(analysis) -> dict` (SPDX 2.3)
- `load_catalog(overrides=...) -> Catalog`
- `evaluate(analysis, context, catalog, vulnerabilities) -> HardeningReport`
- `decide(report, AdmissionRule(...)) -> AdmissionDecision`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policy.lazy import exports

if TYPE_CHECKING:
    from policy.admission import AdmissionDecision, AdmissionRule, decide
    from policy.analyzer import AnalysisError, AnalysisLimits, ImageAnalysis, analyze_image
    from policy.catalog import Catalog, CatalogError, Criterion, load_catalog
    from policy.context import BaseImage, ImageContext, ProvenanceSummary, context_from_reader
    from policy.evaluate import evaluate
    from policy.report import CriterionResult, HardeningReport, ReportError
    from policy.sbom import build_sbom, spdx

# Loaded on first use (policy.lazy): the mirror CLI's version parser must not load every
# analyzer and the database code.
_PROVIDERS = {
    "AdmissionDecision": "policy.admission",
    "AdmissionRule": "policy.admission",
    "decide": "policy.admission",
    "AnalysisError": "policy.analyzer",
    "AnalysisLimits": "policy.analyzer",
    "ImageAnalysis": "policy.analyzer",
    "analyze_image": "policy.analyzer",
    "Catalog": "policy.catalog",
    "CatalogError": "policy.catalog",
    "Criterion": "policy.catalog",
    "load_catalog": "policy.catalog",
    "BaseImage": "policy.context",
    "ImageContext": "policy.context",
    "ProvenanceSummary": "policy.context",
    "context_from_reader": "policy.context",
    "evaluate": "policy.evaluate",
    "CriterionResult": "policy.report",
    "HardeningReport": "policy.report",
    "ReportError": "policy.report",
    "build_sbom": "policy.sbom",
    "spdx": "policy.sbom",
}


__getattr__ = exports(__name__, _PROVIDERS)

__all__ = [
    "AdmissionDecision",
    "AdmissionRule",
    "AnalysisError",
    "AnalysisLimits",
    "BaseImage",
    "Catalog",
    "CatalogError",
    "Criterion",
    "CriterionResult",
    "HardeningReport",
    "ImageAnalysis",
    "ImageContext",
    "ProvenanceSummary",
    "ReportError",
    "analyze_image",
    "build_sbom",
    "context_from_reader",
    "decide",
    "evaluate",
    "load_catalog",
    "spdx",
]
