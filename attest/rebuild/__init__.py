"""Rebuild images from their declared source and prove they are reproducible.

    result = await rebuild(reader, "v1", bases=resolver, recipe=spec, output=dir)
    result.outcome            # "reproduced" | "differs" | "failed"
    result.diff               # which layers, which files, which attributes differ
    result.statement(image=repo, rebuilder=verifier)   # Zoll's rebuild predicate

`compare_images` compares any two images on their own (no build). Everything works on
`ContentReader`s, base images included, so a rebuild needs no network.
"""

from attest.rebuild.bases import BaseImageMissing, BaseResolver, LayoutBases, export_image
from attest.rebuild.buildah import BuildahBackend
from attest.rebuild.builder import BaseLayout, BuilderBackend, BuildError, BuildOutput, BuildRequest
from attest.rebuild.compare import CompareError, compare_images
from attest.rebuild.derive import recipe_from_labels, recipe_from_provenance
from attest.rebuild.diff import (
    ConfigDiff,
    DiffLimits,
    FieldChange,
    FileChange,
    ImageDiff,
    LayerDiff,
)
from attest.rebuild.process import LogTail, ProcessLimits
from attest.rebuild.recipe import (
    GitSource,
    PathSource,
    Recipe,
    RecipeError,
    RecipeSpec,
    combine,
    load_recipe,
)
from attest.rebuild.result import FailureReason, RebuildResult
from attest.rebuild.run import RebuildLimits, Reporter, rebuild

__all__ = [
    "BaseImageMissing",
    "BaseLayout",
    "BaseResolver",
    "BuildError",
    "BuildOutput",
    "BuildRequest",
    "BuildahBackend",
    "BuilderBackend",
    "CompareError",
    "ConfigDiff",
    "DiffLimits",
    "FailureReason",
    "FieldChange",
    "FileChange",
    "GitSource",
    "ImageDiff",
    "LayerDiff",
    "LayoutBases",
    "LogTail",
    "PathSource",
    "ProcessLimits",
    "RebuildLimits",
    "RebuildResult",
    "Recipe",
    "RecipeError",
    "RecipeSpec",
    "Reporter",
    "combine",
    "compare_images",
    "export_image",
    "load_recipe",
    "rebuild",
    "recipe_from_labels",
    "recipe_from_provenance",
]
