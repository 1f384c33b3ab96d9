"""Hand-made OCI image layouts for hostile layers that no image builder would produce."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.oci import mediatypes as mt


@dataclass
class Layout:
    root: Path

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> tuple[str, int]:
        return self.blob_stream([data])

    def blob_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write a blob from chunks (bombs never sit in memory); return (digest, size)."""
        tmp = self.root / "blobs" / "upload.tmp"
        h = hashlib.sha256()
        size = 0
        with tmp.open("wb") as fh:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                fh.write(chunk)
        digest = "sha256:" + h.hexdigest()
        tmp.rename(self.root / "blobs" / "sha256" / h.hexdigest())
        return digest, size

    def image(
        self,
        layers: list[tuple[str, int, str]],
        config: dict[str, Any] | None = None,
        tag: str = "latest",
    ) -> str:
        """Write config + manifest + index for `layers` (digest, size, media type)."""
        cfg = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "1000"},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
            **(config or {}),
        }
        cfg_digest, cfg_size = self.blob(json.dumps(cfg).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": m, "digest": d, "size": s} for d, s, m in layers],
        }
        raw = json.dumps(manifest).encode()
        digest, size = self.blob(raw)
        index = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
        (self.root / "index.json").write_text(json.dumps(index))
        return digest


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar archive of hand-made members (names are not sanitised: that is the point)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    return info
