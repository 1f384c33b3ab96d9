"""Hand-made OCI layouts whose layers are real tar archives written by `tarfile`.

The comparison must name owners, modes, times and xattrs that buildah never varies in
a small test build, so these layers are written directly, one attribute at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from registry.oci import mediatypes as mt
from registry.oci.digest import Digest


@dataclass
class Entry:
    """One tar member; defaults are what buildah writes for a plain file."""

    path: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    link: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)


def tar_of(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.type = e.kind
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
            info.linkname = e.link
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == tarfile.REGTYPE:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(tar: bytes, how: str) -> tuple[bytes, str]:
    if how == "gzip":
        return gzip.compress(tar, mtime=0), mt.OCI_LAYER_GZIP
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(tar), mt.OCI_LAYER_ZSTD
    return tar, mt.OCI_LAYER


def write_image(
    root: Path,
    layers: list[bytes],
    *,
    compression: str = "gzip",
    config: dict[str, object] | None = None,
    tag: str = "latest",
) -> Digest:
    """An OCI layout at `root` with one image of `layers` (uncompressed tars)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descriptors = []
    diff_ids = []
    for tar in layers:
        data, media_type = compress(tar, compression)
        descriptors.append({"mediaType": media_type, **blob(data)})
        diff_ids.append(f"sha256:{hashlib.sha256(tar).hexdigest()}")
    cfg = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        **(config or {}),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **blob(json.dumps(cfg).encode())},
        "layers": descriptors,
    }
    ref = blob(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                **ref,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return Digest.parse(str(ref["digest"]))
