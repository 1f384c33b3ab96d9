"""One layer as a table of file records: every attribute that can make two layers differ.

A record holds the content's SHA-256, never the content, so a table costs a few hundred
bytes per entry whatever the file sizes; `max_entries` bounds the table itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from attest.rebuild.layerstream import (
    Chunks,
    Decompressed,
    LayerFormatError,
    StreamLimit,
)
from attest.rebuild.tarstream import Member, TarFormatError, TarStream
from registry.oci.digest import Digest

FIELDS: Final = (
    "type",
    "content",
    "size",
    "mode",
    "owner",
    "mtime",
    "xattrs",
    "link",
    "device",
    "headers",
)
"""What is compared per path, in the order it is reported."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What a path in a layer is, reduced to comparable strings and hashes."""

    kind: str
    mode: int
    owner: str
    size: int
    mtime: str
    content: str
    link: str
    device: str
    xattrs: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    position: int = field(compare=False)
    """Where in the tar the entry was (for order checks; not part of equality)."""

    def value(self, name: str) -> str:
        """The display value of one of `FIELDS`."""
        if name == "type":
            return self.kind
        if name == "mode":
            return f"{self.mode:04o}"
        if name == "size":
            return str(self.size)
        if name in ("xattrs", "headers"):
            pairs: tuple[tuple[str, str], ...] = getattr(self, name)
            return ", ".join(f"{k}={v}" for k, v in pairs)
        value: str = getattr(self, name)
        return value


def normalise(name: str) -> str:
    """`./etc/passwd`, `etc/passwd` and `/etc/passwd/` are all `/etc/passwd`."""
    while name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "/" + name if name not in ("", ".") else "/"


def _short(value: str, limit: int = 64) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def record_of(member: Member, content: str, position: int) -> FileRecord:
    owner = f"{member.uid}:{member.gid}"
    if member.uname or member.gname:
        owner += f" ({member.uname}:{member.gname})"
    return FileRecord(
        kind=member.kind,
        mode=member.mode,
        owner=owner,
        size=member.size,
        mtime=member.mtime,
        content=content,
        link=normalise(member.linkname) if member.kind == "hardlink" else member.linkname,
        device=member.device,
        xattrs=tuple(
            sorted(
                (k, hashlib.sha256(v.encode("utf-8", "surrogateescape")).hexdigest()[:16])
                for k, v in member.xattrs.items()
            )
        )
        if member.xattrs
        else (),
        headers=tuple(sorted((k, _short(v)) for k, v in member.extra.items()))
        if member.extra
        else (),
        position=position,
    )


@dataclass(frozen=True, slots=True)
class LayerScan:
    """How reading one layer went."""

    diff_id: Digest | None
    """SHA-256 of the uncompressed tar; None when reading stopped early."""
    entries: int
    uncompressed_bytes: int
    compression: str
    incomplete: str | None = None
    """Why the file table is not the whole layer (a limit, a malformed archive)."""


Visit = Callable[[str, FileRecord], bool]
"""Called per entry with its normalised path; returns False once it takes no more."""


def scan_layer(
    source: Chunks,
    visit: Visit,
    *,
    max_layer_bytes: int,
    max_ratio: int,
    max_header_bytes: int,
    max_path_bytes: int,
) -> LayerScan:
    """Stream one (compressed) layer blob through `visit`; never raises for bad content.

    Runs in a worker thread. When `visit` stops taking entries the rest is still read,
    so the diff_id covers the whole layer.
    """
    stream = Decompressed(source, max_bytes=max_layer_bytes, max_ratio=max_ratio)
    tar = TarStream(stream, max_header_bytes=max_header_bytes, max_path_bytes=max_path_bytes)
    entries = 0
    incomplete: str | None = None
    try:
        while (member := tar.next()) is not None:
            content = ""
            if member.kind == "file":
                hasher = hashlib.sha256()
                for chunk in tar.data():
                    hasher.update(chunk)
                content = f"sha256:{hasher.hexdigest()}"
            if incomplete is None and not visit(
                normalise(member.name), record_of(member, content, entries)
            ):
                incomplete = f"more than {entries} entries; the rest were not compared"
            entries += 1
        stream.drain()
    except (StreamLimit, TarFormatError, LayerFormatError) as exc:
        return LayerScan(None, entries, stream.produced, stream.compression, str(exc))
    return LayerScan(stream.diff_id(), entries, stream.produced, stream.compression, incomplete)
