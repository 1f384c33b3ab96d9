"""Charts in OCI image layouts, read through the same `ContentReader` the service uses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from registry.oci import mediatypes as mt
from tests.support.charts import Chart, chart_manifest


def write_blob(root: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / hexdigest).write_bytes(data)
    return "sha256:" + hexdigest


def chart_layout(
    root: Path, chart: Chart, archive: bytes | None = None, tag: str = "latest"
) -> str:
    """An OCI layout holding `chart` as Helm pushes it; returns the manifest digest."""
    (root / "oci-layout").parent.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    archive = chart.archive() if archive is None else archive
    config = chart.config()
    write_blob(root, config)
    write_blob(root, archive)
    raw = chart_manifest(config, archive)
    digest = write_blob(root, raw)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": digest,
                "size": len(raw),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return digest
