"""A tar reader for untrusted layers: headers parsed by hand, every size bounded.

`tarfile` buffers PAX headers whole and raises a zoo of exceptions on hostile input;
this reader accepts ustar, GNU and PAX archives, caps header payloads and name lengths,
and reports anything malformed as `TarError` with the offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from policy.analyzer.decompress import Decompressor
from policy.analyzer.limits import AnalysisLimits, LimitExceeded

BLOCK: Final = 512
CAPABILITY_XATTR: Final = "SCHILY.xattr.security.capability"

_TYPES: Final = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",
    b"S": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
}


class TarError(Exception):
    """The layer is not a well-formed tar archive."""


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


class ByteStream:
    """Sequential reads over decompressed chunks without copying what is skipped."""

    def __init__(self, source: Decompressor) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def _fill(self) -> bool:
        chunk = self._source.read()
        if not chunk:
            return False
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos :] + chunk
        else:
            self._buf = chunk
        self._pos = 0
        return True

    def read_exact(self, n: int) -> bytes | None:
        """Exactly n bytes, or None at a clean end; TarError when cut short."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                if len(self._buf) - self._pos == 0:
                    return None
                raise TarError(f"archive ends inside a block at offset {self.offset}")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.offset += n
        return out

    def take(self, n: int) -> bytes:
        """Up to n bytes (at least one) from what is buffered, refilling when empty."""
        if self._pos >= len(self._buf) and not self._fill():
            raise TarError(f"archive ends inside file data at offset {self.offset}")
        end = min(self._pos + n, len(self._buf))
        out = self._buf[self._pos : end] if (self._pos or end < len(self._buf)) else self._buf
        self.offset += end - self._pos
        self._pos = end
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise TarError(f"archive ends inside file data at offset {self.offset}")
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            self.offset += take
            n -= take

    def drain(self) -> int:
        """Read to the end, returning how many bytes were left."""
        left = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while True:
            chunk = self._source.read()
            if not chunk:
                break
            left += len(chunk)
        self.offset += left
        return left


def _number(field: bytes, what: str, offset: int) -> int:
    if field and field[0] & 0x80:
        if field[0] == 0xFF:
            raise TarError(f"negative {what} at offset {offset}")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"{what} is not a number at offset {offset}") from None


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156], "checksum", 0)
    except TarError:
        return False
    unsigned = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
    if stored == unsigned:
        return True
    signed = sum((b - 256 if b > 127 else b) for b in header[:148] + header[156:]) + 256
    return stored == signed


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _parse_pax(payload: bytes, offset: int) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(payload[pos:space])
        except ValueError:
            raise TarError(f"malformed PAX record at offset {offset}") from None
        if length <= 0 or pos + length > len(payload):
            raise TarError(f"malformed PAX record length at offset {offset}")
        record = payload[space + 1 : pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep:
            raise TarError(f"PAX record without '=' at offset {offset}")
        records[_text(key)] = _text(value)
        pos += length
    return records


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
        data = self.stream.read_exact(size) if size else b""
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
            header = self.stream.read_exact(BLOCK)
            if header is None:
                return None
            if header == bytes(BLOCK):
                return None
            if not _checksum_ok(header):
                raise TarError(f"bad header checksum at offset {offset}")
            typeflag = header[156:157]
            size = _number(header[124:136], "size", offset)
            if typeflag in (b"x", b"g"):
                records = _parse_pax(self._payload(size, "PAX"), offset)
                if typeflag == b"g":
                    self._global.update(records)
                else:
                    pax.update(records)
                continue
            if typeflag in (b"L", b"K"):
                value = _text(self._payload(size, "GNU long name").split(b"\0", 1)[0])
                if typeflag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            break
        merged = {**self._global, **pax}
        kind = _TYPES.get(typeflag, "other")
        name = header[0:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\0":  # POSIX only: GNU headers keep atime/ctime there
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        path = merged.get("path") or long_name or _text(name)
        linkname = merged.get("linkpath") or long_link or _text(header[157:257].split(b"\0", 1)[0])
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
            mode=_number(header[100:108], "mode", offset) & 0o7777,
            uid=uid if uid is not None else _number(header[108:116], "uid", offset),
            gid=gid if gid is not None else _number(header[116:124], "gid", offset),
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
