"""A CycloneDX 1.6 SBOM of a chart: the chart, its subcharts and the images it deploys.

Images are components of type `container` with an OCI package URL (`pkg:oci/…`) that
names the digest and the repository, so a vulnerability in an image can be traced to the
charts that deploy it.
"""

from __future__ import annotations

import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

from policy.chart.analysis import ChartAnalysis, ChartImage
from policy.sbom.cyclonedx import SPEC_VERSION

_NAMESPACE = uuid.UUID("0b6b3f2e-8a5e-4d4c-9a44-6a7a1d0c4c11")


def image_purl(image: ChartImage) -> str | None:
    if image.repository is None:
        return None
    name = image.repository.rsplit("/", 1)[-1]
    version = f"@{urllib.parse.quote(image.digest, safe='')}" if image.digest else ""
    query = {"repository_url": f"{image.registry}/{image.repository}"}
    if image.tag:
        query["tag"] = image.tag
    return f"pkg:oci/{name}{version}?{urllib.parse.urlencode(query)}"


def _image(image: ChartImage) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "container",
        "bom-ref": f"image:{image.reference}",
        "name": image.repository or image.reference,
        "version": image.digest or image.tag or "",
        "properties": [{"name": "zoll:chart:used_by", "value": u} for u in image.used_by],
    }
    purl = image_purl(image)
    if purl:
        component["purl"] = purl
    if image.digest and image.digest.startswith("sha256:"):
        component["hashes"] = [{"alg": "SHA-256", "content": image.digest.split(":", 1)[1]}]
    return component


def chart_sbom(
    analysis: ChartAnalysis, *, name: str | None = None, created: datetime | None = None
) -> dict[str, Any]:
    digest = analysis.manifest_digest
    ref = digest if name is None else f"{name}@{digest}"
    chart = analysis.chart
    subject: dict[str, Any] = {
        "type": "application",
        "bom-ref": ref,
        "name": chart.name if chart else (name or digest),
        "version": chart.version if chart else digest,
        "hashes": [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}],
        "properties": [{"name": "zoll:artifact", "value": "helm-chart"}],
    }
    if chart and chart.app_version:
        subject["properties"].append({"name": "zoll:chart:appVersion", "value": chart.app_version})
    subcharts = [
        {
            "type": "application",
            "bom-ref": f"subchart:{s.path}",
            "name": s.name,
            "version": s.version,
            "properties": [
                {"name": "zoll:artifact", "value": "helm-chart"},
                {"name": "zoll:chart:path", "value": s.path},
            ],
        }
        for s in analysis.subcharts
    ]
    images = [_image(i) for i in analysis.images]
    components = subcharts + images
    when = (created or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(_NAMESPACE, ref)}",
        "version": 1,
        "metadata": {
            "timestamp": when,
            "tools": {
                "components": [
                    {"type": "application", "name": "zoll", "version": analysis.analyzer_version}
                ]
            },
            "component": subject,
        },
        "components": components,
        "dependencies": [{"ref": ref, "dependsOn": [c["bom-ref"] for c in components]}],
    }
