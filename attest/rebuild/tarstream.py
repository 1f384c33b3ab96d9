"""A bounded tar reader that keeps every attribute a rebuild comparison needs.

Layers come from upstream and are untrusted: headers are parsed by hand (ustar, GNU,
PAX), header payloads and names are capped, and anything malformed is a `TarFormatError`
with the offset. Unlike `tarfile`, nothing is buffered beyond one header payload, and
member data is handed out in chunks for hashing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from attest.rebuild.layerstream import Chunks, StreamLimit

BLOCK: Final = 512
_KINDS: Final = {
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
_XATTR_PREFIXES: Final = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")
_HANDLED_PAX: Final = frozenset(
    {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime"}
)


class TarFormatError(Exception):
    """The layer is not a well-formed tar archive."""


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


class _Bytes:
    """Sequential reads over decompressed chunks, copying only what a header needs."""

    def __init__(self, source: Chunks) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def _fill(self) -> bool:
        chunk = self._source.read()
        if not chunk:
            return False
        self._buf = self._buf[self._pos :] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0
        return True

    def exact(self, n: int) -> bytes | None:
        """Exactly n bytes, None at a clean end, TarFormatError when cut short."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                if len(self._buf) == self._pos:
                    return None
                raise TarFormatError(f"the archive ends inside a header at offset {self.offset}")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.offset += n
        return out

    def some(self, n: int) -> bytes:
        """Between 1 and n bytes of member data."""
        if self._pos >= len(self._buf) and not self._fill():
            raise TarFormatError(f"the archive ends inside file data at offset {self.offset}")
        end = min(self._pos + n, len(self._buf))
        out = self._buf[self._pos : end]
        self.offset += end - self._pos
        self._pos = end
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise TarFormatError(f"the archive ends inside file data at offset {self.offset}")
            step = min(n, len(self._buf) - self._pos)
            self._pos += step
            self.offset += step
            n -= step


def _number(raw: bytes, what: str, offset: int) -> int:
    if raw and raw[0] & 0x80:
        if raw[0] == 0xFF:
            raise TarFormatError(f"negative {what} at offset {offset}")
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"the {what} field is not a number at offset {offset}") from None


_LOW: Final = bytes(range(128))


def _checksum_ok(header: bytes) -> bool:
    """POSIX unsigned checksum, or the signed one some old tars wrote."""
    try:
        stored = _number(header[148:156], "checksum", 0)
    except TarFormatError:
        return False
    body = header[:148] + b"        " + header[156:]
    unsigned = sum(body)
    if stored == unsigned:
        return True
    return stored == unsigned - 256 * len(body.translate(None, _LOW))


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(payload: bytes, offset: int) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            if payload[pos:].strip(b"\0\n"):
                raise TarFormatError(f"a PAX record has no length at offset {offset}")
            break
        try:
            length = int(payload[pos:space])
        except ValueError:
            raise TarFormatError(
                f"a PAX record length is not a number at offset {offset}"
            ) from None
        if length <= space - pos or pos + length > len(payload):
            raise TarFormatError(f"a PAX record length is out of range at offset {offset}")
        key, sep, value = payload[space + 1 : pos + length - 1].partition(b"=")
        if not sep:
            raise TarFormatError(f"a PAX record has no '=' at offset {offset}")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


class TarStream:
    """Iterate the members of one layer; data the caller does not read is skipped."""

    def __init__(self, source: Chunks, *, max_header_bytes: int, max_path_bytes: int) -> None:
        self._bytes = _Bytes(source)
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
            chunk = self._bytes.some(min(self._pending, 1 << 20))
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
            if not _checksum_ok(header):
                raise TarFormatError(f"bad header checksum at offset {offset}")
            flag = header[156:157]
            size = _number(header[124:136], "size", offset)
            if flag in (b"x", b"g"):
                records = _pax(self._payload(size, "PAX", offset), offset)
                (self._global if flag == b"g" else pax).update(records)
                continue
            if flag in (b"L", b"K"):
                value = _text(self._payload(size, "GNU long name", offset))
                if flag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            break
        merged = {**self._global, **pax} if self._global else pax
        kind = _KINDS.get(flag, "other")
        raw_name = header[0:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar":
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix and header[257:263] == b"ustar\0":
                raw_name = prefix + b"/" + raw_name
        name = merged.get("path") or long_name or raw_name.decode("utf-8", "surrogateescape")
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
            mode=_number(header[100:108], "mode", offset) & 0o7777,
            uid=int(uid) if uid.isdigit() else _number(header[108:116], "uid", offset),
            gid=int(gid) if gid.isdigit() else _number(header[116:124], "gid", offset),
            uname=merged.get("uname", _text(header[265:297])),
            gname=merged.get("gname", _text(header[297:329])),
            size=size if kind in ("file", "other") else 0,
            mtime=merged.get("mtime", str(_number(header[136:148], "mtime", offset))),
            linkname=merged.get("linkpath") or long_link or _text(header[157:257]),
            device=(
                f"{_number(header[329:337], 'devmajor', offset)},"
                f"{_number(header[337:345], 'devminor', offset)}"
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
