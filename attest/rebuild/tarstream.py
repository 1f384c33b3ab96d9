"""The rebuild comparison's tar reader: every attribute two layers may differ in.

Layers come from upstream and are untrusted: the header format is parsed by
`registry.oci.tarformat` (shared with the analyzer), header payloads and names are
capped, and anything malformed is a `TarFormatError` with the offset. Unlike `tarfile`,
nothing is buffered beyond one header payload, and member data is handed out in chunks
for hashing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from attest.rebuild.layerstream import Chunks, StreamLimit
from registry.oci.tarformat import TarBytes, TarWalker, number, text
from registry.oci.tarformat import TarError as TarFormatError

__all__ = ["Member", "TarFormatError", "TarStream"]
_TEXT: Final = "surrogateescape"
"""Names kept byte for byte: two layers differing in one undecodable byte differ here."""
_XATTR_PREFIXES: Final = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")
_HANDLED_PAX: Final = frozenset(
    {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime"}
)


@dataclass(slots=True)
class Member:
    """One tar entry with its name as stored (normalised by the caller).

    Header-only kinds (links, directories, devices, fifos) carry no data whatever their
    size field says, as in Go's archive/tar, which wrote most layers."""

    name: str
    kind: str
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    size: int
    mtime: str
    linkname: str
    device: str
    xattrs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    """PAX records not otherwise represented (atime, ctime, vendor keys)."""


class TarStream:
    """Iterate the members of one layer; data the caller does not read is skipped."""

    def __init__(self, source: Chunks, *, max_header_bytes: int, max_path_bytes: int) -> None:
        self._walker = TarWalker(
            TarBytes(source),
            max_header_bytes=max_header_bytes,
            max_path_bytes=max_path_bytes,
            errors=_TEXT,
            limit=StreamLimit,
        )

    def data(self) -> Iterator[bytes]:
        """The current member's content, in chunks of at most 1 MiB."""
        return self._walker.data(1 << 20)

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive."""
        raw = self._walker.next()
        if raw is None:
            return None
        header, merged, offset = raw.header, raw.merged, raw.offset
        member = Member(
            name=raw.name,
            kind=raw.kind,
            mode=raw.mode,
            uid=raw.uid,
            gid=raw.gid,
            uname=merged.get("uname", text(header[265:297], _TEXT)),
            gname=merged.get("gname", text(header[297:329], _TEXT)),
            size=raw.size,
            mtime=merged.get("mtime", str(number(header[136:148], "mtime", offset))),
            linkname=raw.linkname,
            device=(
                f"{number(header[329:337], 'devmajor', offset)},"
                f"{number(header[337:345], 'devminor', offset)}"
                if raw.kind in ("char", "block")
                else ""
            ),
        )
        for key, value in merged.items():
            if key.startswith(_XATTR_PREFIXES):
                member.xattrs[key.split(".xattr.", 1)[1]] = value
            elif key not in _HANDLED_PAX:
                member.extra[key] = value
        return member
