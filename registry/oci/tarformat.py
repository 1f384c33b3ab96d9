"""The tar format as untrusted layers need it read: the pieces both layer readers share.

The analyzer (`policy.analyzer.tarstream`) and the rebuild comparison
(`attest.rebuild.tarstream`) keep different facts about each entry, but must agree with
each other, and with Go's `archive/tar` that container runtimes extract layers with, on
where headers are and what they say. Headers are parsed by hand (ustar, GNU, PAX): numbers
in octal or base-256, both checksum conventions, PAX records checked against their
lengths; anything malformed is a `TarError` naming the offset. Nothing is buffered beyond
one header's payload. `TarWalker` walks the entries (extension headers applied, which
kinds carry data decided here, once); each reader turns a `RawEntry` into its own record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

BLOCK: Final = 512
KINDS: Final = {
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
"""Type flags → kinds; anything else is "other". Only files and "other" carry data:
links, directories, devices and fifos are header-only whatever their size field says."""
_LOW: Final = bytes(range(128))


class TarError(Exception):
    """The layer is not a well-formed tar archive."""


class ChunkSource(Protocol):
    """Decompressed layer bytes, a chunk per call, b"" at the end."""

    def read(self) -> bytes: ...


class TarBytes:
    """Sequential reads over decompressed chunks, copying only what a header needs."""

    def __init__(self, source: ChunkSource) -> None:
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
        """Exactly n bytes, None at a clean end, TarError when cut short."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                if len(self._buf) == self._pos:
                    return None
                raise TarError(f"the archive ends inside a header at offset {self.offset}")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.offset += n
        return out

    def take(self, n: int) -> bytes:
        """Between 1 and n bytes of entry data (the buffer itself when all of it fits)."""
        if self._pos >= len(self._buf) and not self._fill():
            raise TarError(f"the archive ends inside file data at offset {self.offset}")
        end = min(self._pos + n, len(self._buf))
        out = self._buf[self._pos : end] if (self._pos or end < len(self._buf)) else self._buf
        self.offset += end - self._pos
        self._pos = end
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise TarError(f"the archive ends inside file data at offset {self.offset}")
            step = min(n, len(self._buf) - self._pos)
            self._pos += step
            self.offset += step
            n -= step

    def drain(self) -> int:
        """Read to the end; return how many bytes were left."""
        left = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while chunk := self._source.read():
            left += len(chunk)
        self.offset += left
        return left


def number(raw: bytes, what: str, offset: int) -> int:
    """A numeric header field: octal text, or base-256 with the high bit set."""
    if raw and raw[0] & 0x80:
        if raw[0] == 0xFF:
            raise TarError(f"negative {what} at offset {offset}")
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"the {what} field is not a number at offset {offset}") from None


def checksum_ok(header: bytes) -> bool:
    """POSIX unsigned checksum, or the signed one some old tars wrote."""
    try:
        stored = number(header[148:156], "checksum", 0)
    except TarError:
        return False
    body = header[:148] + b"        " + header[156:]
    unsigned = sum(body)
    if stored == unsigned:
        return True
    return stored == unsigned - 256 * len(body.translate(None, _LOW))


def text(raw: bytes, errors: str) -> str:
    """A string field up to its first NUL."""
    return raw.split(b"\0", 1)[0].decode("utf-8", errors)


def raw_name(header: bytes) -> bytes:
    """The name field, with the ustar prefix of POSIX headers (GNU headers keep atime and
    ctime where POSIX has the prefix)."""
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name


def parse_pax(payload: bytes, offset: int, errors: str) -> dict[str, str]:
    """PAX records ("<length> <key>=<value>\\n"), each checked against its length."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            if payload[pos:].strip(b"\0\n"):
                raise TarError(f"a PAX record has no length at offset {offset}")
            break
        try:
            length = int(payload[pos:space])
        except ValueError:
            raise TarError(f"a PAX record length is not a number at offset {offset}") from None
        if length <= space - pos or pos + length > len(payload):
            raise TarError(f"a PAX record length is out of range at offset {offset}")
        key, sep, value = payload[space + 1 : pos + length - 1].partition(b"=")
        if not sep:
            raise TarError(f"a PAX record has no '=' at offset {offset}")
        records[key.decode("utf-8", errors)] = value.decode("utf-8", errors)
        pos += length
    return records


@dataclass(slots=True)
class RawEntry:
    """One entry as its headers say, extension headers (PAX, GNU long names) applied."""

    offset: int
    header: bytes
    kind: str
    name: str
    linkname: str
    mode: int
    uid: int
    gid: int
    size: int
    """Bytes of data that follow: 0 for header-only kinds whatever the size field says."""
    pax: dict[str, str]
    """This entry's own PAX records."""
    merged: dict[str, str]
    """Global PAX records overlaid with this entry's."""


class TarWalker:
    """Walk the entries of one layer; data the caller does not read is skipped. Names are
    decoded with `errors`; an extension header over `max_header_bytes` or a name over
    `max_path_bytes` raises `limit(name, message)` (each reader's own exception)."""

    def __init__(
        self,
        stream: TarBytes,
        *,
        max_header_bytes: int,
        max_path_bytes: int,
        errors: str,
        limit: Callable[[str, str], Exception],
    ) -> None:
        self.stream = stream
        self._max_header = max_header_bytes
        self._max_path = max_path_bytes
        self._errors = errors
        self._limit = limit
        self._pending = 0
        self._pad = 0
        self._global: dict[str, str] = {}

    def _payload(self, size: int, what: str, offset: int) -> bytes:
        if size > self._max_header:
            raise self._limit(
                "max_header_bytes",
                f"a {what} header of {size} bytes at offset {offset} exceeds {self._max_header}",
            )
        data = self.stream.exact(size) if size else b""
        if data is None:
            raise TarError(f"the archive ends inside a {what} header at offset {offset}")
        self.stream.skip(-size % BLOCK)
        return data

    def data(self, chunk: int) -> Iterator[bytes]:
        """The current entry's content in pieces of at most `chunk` bytes."""
        while self._pending:
            piece = self.stream.take(min(self._pending, chunk))
            self._pending -= len(piece)
            yield piece

    def next(self) -> RawEntry | None:
        """The next entry, or None at the end of the archive."""
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
            flag = header[156:157]
            size = number(header[124:136], "size", offset)
            if flag in (b"x", b"g"):
                records = parse_pax(self._payload(size, "PAX", offset), offset, self._errors)
                (self._global if flag == b"g" else pax).update(records)
                continue
            if flag in (b"L", b"K"):
                value = text(self._payload(size, "GNU long name", offset), self._errors)
                if flag == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            break
        merged = {**self._global, **pax}
        kind = KINDS.get(flag, "other")
        name = merged.get("path") or long_name or text(raw_name(header), self._errors)
        if len(name.encode("utf-8", "surrogateescape")) > self._max_path:
            raise self._limit(
                "max_path_bytes", f"a name at offset {offset} is longer than {self._max_path}"
            )
        if "size" in merged:
            try:
                size = int(merged["size"])
            except ValueError:
                raise TarError(f"the PAX size is not a number at offset {offset}") from None
        uid, gid = merged.get("uid", ""), merged.get("gid", "")
        entry = RawEntry(
            offset=offset,
            header=header,
            kind=kind,
            name=name,
            linkname=merged.get("linkpath") or long_link or text(header[157:257], self._errors),
            mode=number(header[100:108], "mode", offset) & 0o7777,
            uid=int(uid) if uid.isdigit() else number(header[108:116], "uid", offset),
            gid=int(gid) if gid.isdigit() else number(header[116:124], "gid", offset),
            size=size if kind in ("file", "other") else 0,
            pax=pax,
            merged=merged,
        )
        self._pending = entry.size
        self._pad = -entry.size % BLOCK
        return entry
