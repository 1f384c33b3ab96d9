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
from registry.oci.tarformat import (
    BLOCK,
    KINDS,
    TarBytes,
    checksum_ok,
    number,
    parse_pax,
    raw_name,
    text,
)
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
        self._bytes = TarBytes(source)
        self._max_header = max_header_bytes
        self._max_path = max_path_bytes
        self._pending = 0
        self._pad = 0
        self._global: dict[str, str] = {}

    def _payload(self, size: int, what: str, offset: int) -> bytes:
        if size > self._max_header:
            raise StreamLimit(
                "max_header_bytes",
                f"a {what} header of {size} bytes at offset {offset} exceeds {self._max_header}",
            )
        data = self._bytes.exact(size) if size else b""
        if data is None:
            raise TarFormatError(f"the archive ends inside a {what} header at offset {offset}")
        self._bytes.skip(-size % BLOCK)
        return data

    def data(self) -> Iterator[bytes]:
        """The current member's content, in chunks of at most 1 MiB."""
        while self._pending:
            chunk = self._bytes.take(min(self._pending, 1 << 20))
            self._pending -= len(chunk)
            yield chunk

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive."""
        if self._pending or self._pad:
            self._bytes.skip(self._pending + self._pad)
            self._pending = self._pad = 0
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            offset = self._bytes.offset
            header = self._bytes.exact(BLOCK)
            if header is None or header == bytes(BLOCK):
                return None
            if not checksum_ok(header):
                raise TarFormatError(f"bad header checksum at offset {offset}")
            flag = header[156:157]
            size = number(header[124:136], "size", offset)
            if flag in (b"x", b"g"):
                records = parse_pax(self._payload(size, "PAX", offset), offset, _TEXT)
                (self._global if flag == b"g" else pax).update(records)
                continue
            if flag in (b"L", b"K"):
                value = text(self._payload(size, "GNU long name", offset), _TEXT)
                if flag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            break
        merged = {**self._global, **pax} if self._global else pax
        kind = KINDS.get(flag, "other")
        name = merged.get("path") or long_name or text(raw_name(header), _TEXT)
        if len(name.encode("utf-8", "surrogateescape")) > self._max_path:
            raise StreamLimit(
                "max_path_bytes", f"a name at offset {offset} is longer than {self._max_path}"
            )
        if "size" in merged:
            try:
                size = int(merged["size"])
            except ValueError:
                raise TarFormatError(f"the PAX size is not a number at offset {offset}") from None
        uid = merged.get("uid", "")
        gid = merged.get("gid", "")
        member = Member(
            name=name,
            kind=kind,
            mode=number(header[100:108], "mode", offset) & 0o7777,
            uid=int(uid) if uid.isdigit() else number(header[108:116], "uid", offset),
            gid=int(gid) if gid.isdigit() else number(header[116:124], "gid", offset),
            uname=merged.get("uname", text(header[265:297], _TEXT)),
            gname=merged.get("gname", text(header[297:329], _TEXT)),
            size=size if kind in ("file", "other") else 0,
            mtime=merged.get("mtime", str(number(header[136:148], "mtime", offset))),
            linkname=merged.get("linkpath") or long_link or text(header[157:257], _TEXT),
            device=(
                f"{number(header[329:337], 'devmajor', offset)},"
                f"{number(header[337:345], 'devminor', offset)}"
                if kind in ("char", "block")
                else ""
            ),
        )
        if merged:
            for key, value in merged.items():
                if key.startswith(_XATTR_PREFIXES):
                    member.xattrs[key.split(".xattr.", 1)[1]] = value
                elif key not in _HANDLED_PAX:
                    member.extra[key] = value
        self._pending = member.size
        self._pad = -member.size % BLOCK
        return member
