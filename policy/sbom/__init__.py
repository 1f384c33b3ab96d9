"""SBOMs of an image's final tree: package databases → `Package` → CycloneDX / SPDX."""

from policy.sbom.cyclonedx import build_sbom
from policy.sbom.spdx import spdx

__all__ = ["build_sbom", "spdx"]
