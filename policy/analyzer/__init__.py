"""The image analyzer: streamed layers → final file tree facts, packages, findings."""

from policy.analyzer.image import ANALYZER_VERSION, AnalysisError, analyze_image
from policy.analyzer.layercache import LayerCache
from policy.analyzer.limits import AnalysisLimits
from policy.analyzer.model import (
    FileFact,
    Finding,
    ImageAnalysis,
    ImageConfig,
    LayerInfo,
    OsRelease,
    TreeSummary,
    User,
)

__all__ = [
    "ANALYZER_VERSION",
    "AnalysisError",
    "AnalysisLimits",
    "FileFact",
    "Finding",
    "ImageAnalysis",
    "ImageConfig",
    "LayerCache",
    "LayerInfo",
    "OsRelease",
    "TreeSummary",
    "User",
    "analyze_image",
]
