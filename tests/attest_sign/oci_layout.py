"""Write attestation artifacts into an OCI image layout, as a registry push would."""

from __future__ import annotations

import json
from pathlib import Path

from attest.artifacts import PushManifest
from registry.oci.reader import REF_NAME


def write_blob(layout: Path, digest: str, data: bytes) -> None:
    algorithm, encoded = digest.split(":", 1)
    path = layout / "blobs" / algorithm / encoded
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def push(layout: Path, manifest: PushManifest) -> None:
    """Blobs, then the manifest, then its entry in index.json (tagged if it has a tag)."""
    for blob in manifest.blobs:
        write_blob(layout, str(blob.descriptor.digest), blob.data)
    write_blob(layout, str(manifest.digest), manifest.raw)
    index_path = layout / "index.json"
    index = json.loads(index_path.read_bytes())
    entries = [
        e
        for e in index["manifests"]
        if manifest.tag is None or e.get("annotations", {}).get(REF_NAME) != manifest.tag
    ]
    descriptor = manifest.descriptor().to_json()
    if manifest.tag is not None:
        descriptor["annotations"] = {REF_NAME: manifest.tag}
    entries.append(descriptor)
    index["manifests"] = entries
    index_path.write_text(json.dumps(index))
