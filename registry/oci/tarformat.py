"""The tar format as untrusted layers need it read: the pieces both layer readers share.

The analyzer (`policy.analyzer.tarstream`) and the rebuild comparison
(`attest.rebuild.tarstream`) keep different facts about each entry, but must agree with
each other, and with Go's `archive/tar` that container runtimes extract layers with, on
where headers are and what they say. Headers are parsed by hand (ustar, GNU, PAX): numbers
in octal or base-256, both checksum conventions, PAX records checked against their
lengths; anything malformed is a `TarError` naming the offset. Nothing is buffered beyond
one header's payload.
"""

from __future__ import annotations

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
