"""The analyzer's tar reader: what the analysis needs of each entry, every size bounded.

`tarfile` buffers PAX headers whole and raises a zoo of exceptions on hostile input;
this reader accepts ustar, GNU and PAX archives (the header format itself is
`registry.oci.tarformat`, shared with the rebuild comparison), caps header payloads,
names and file sizes, and reports anything malformed as `TarError` with the offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from policy.analyzer.limits import AnalysisLimits, LimitExceeded
from registry.oci.tarformat import (
    BLOCK,
    KINDS,
    TarError,
    checksum_ok,
    number,
    parse_pax,
    raw_name,
    text,
)
from registry.oci.tarformat import TarBytes as ByteStream

__all__ = ["ByteStream", "TarEntry", "TarError", "TarReader"]
CAPABILITY_XATTR: Final = "SCHILY.xattr.security.capability"
_TEXT: Final = "backslashreplace"
"""Names as the analysis reports them: undecodable bytes spelled out, never lost."""


@dataclass(slots=True)
class TarEntry:
    """One member of a layer, its name not yet normalised."""

    name: str
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str = ""
    capability: bool = False
    offset: int = 0
    pax: dict[str, str] = field(default_factory=dict)


class TarReader:
    """Iterate the entries of one layer; data not read by the caller is skipped."""

    def __init__(self, stream: ByteStream, limits: AnalysisLimits) -> None:
        self.stream = stream
        self.limits = limits
        self._pending = 0
        self._pad = 0
        self._global: dict[str, str] = {}

    def _payload(self, size: int, what: str) -> bytes:
        if size > self.limits.max_header_bytes:
            raise LimitExceeded(
                "max_header_bytes",
                f"{what} header of {size} bytes exceeds {self.limits.max_header_bytes}",
            )
        data = self.stream.exact(size) if size else b""
        if data is None:
            raise TarError(f"archive ends inside a {what} header")
        self.stream.skip(-size % BLOCK)
        return data

    def data(self) -> Iterator[bytes]:
        """The current entry's content in chunks; what is not consumed is skipped later."""
        while self._pending:
            chunk = self.stream.take(self._pending)
            self._pending -= len(chunk)
            yield chunk

    def next(self) -> TarEntry | None:
        if self._pending or self._pad:
            self.stream.skip(self._pending + self._pad)
            self._pending = self._pad = 0
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            offset = self.stream.offset
            header = self.stream.exact(BLOCK)
            if header is None or header == bytes(BLOCK):
                return None
            if not checksum_ok(header):
                raise TarError(f"bad header checksum at offset {offset}")
            typeflag = header[156:157]
            size = number(header[124:136], "size", offset)
            if typeflag in (b"x", b"g"):
                records = parse_pax(self._payload(size, "PAX"), offset, _TEXT)
                if typeflag == b"g":
                    self._global.update(records)
                else:
                    pax.update(records)
                continue
            if typeflag in (b"L", b"K"):
                value = text(self._payload(size, "GNU long name"), _TEXT)
                if typeflag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            break
        merged = {**self._global, **pax}
        kind = KINDS.get(typeflag, "other")
        path = merged.get("path") or long_name or text(raw_name(header), _TEXT)
        linkname = merged.get("linkpath") or long_link or text(header[157:257], _TEXT)
        if "size" in merged:
            try:
                size = int(merged["size"])
            except ValueError:
                raise TarError(f"PAX size is not a number at offset {offset}") from None
        if len(path.encode("utf-8", "surrogateescape")) > self.limits.max_path_bytes:
            raise LimitExceeded(
                "max_path_bytes", f"a name longer than {self.limits.max_path_bytes} bytes"
            )
        if kind == "file" and size > self.limits.max_file_bytes:
            raise LimitExceeded(
                "max_file_bytes", f"{path} is {size} bytes, over {self.limits.max_file_bytes}"
            )
        uid = int(merged["uid"]) if merged.get("uid", "").isdigit() else None
        gid = int(merged["gid"]) if merged.get("gid", "").isdigit() else None
        entry = TarEntry(
            name=path,
            kind=kind,
            mode=number(header[100:108], "mode", offset) & 0o7777,
            uid=uid if uid is not None else number(header[108:116], "uid", offset),
            gid=gid if gid is not None else number(header[116:124], "gid", offset),
            size=size if kind in ("file", "other") else 0,
            linkname=linkname,
            capability=CAPABILITY_XATTR in merged,
            offset=offset,
            pax=pax,
        )
        # Links, directories, devices and fifos carry no data whatever their size field
        # says, as Go's archive/tar (containerd, buildah) reads them: skipping `size` bytes
        # here would hide from the analysis the entries a runtime extracts from them.
        self._pending = size if kind in ("file", "other") else 0
        self._pad = -self._pending % BLOCK
        return entry
