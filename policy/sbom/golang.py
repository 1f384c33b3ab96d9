"""Go modules from the build info the Go toolchain (≥ 1.18) embeds in every binary.

The `.go.buildinfo` blob starts with a 16-byte-aligned magic; with the inline-strings
flag the Go version and the module list follow as length-prefixed strings, so the
binary's content can be scanned as a stream without an ELF parser.
"""

from __future__ import annotations

from typing import Final

from policy.packages import Package
from policy.sbom.purl import purl

MAGIC: Final = b"\xff Go buildinf:"
HEADER: Final = 32
FLAG_INLINE: Final = 0x2
CAPTURE: Final = 1 << 20
_SENTINEL: Final = 16


class BuildInfoScanner:
    """Feed a binary's bytes in order; `packages()` once all were fed."""

    __slots__ = ("_offset", "_tail", "captured", "found")

    def __init__(self) -> None:
        self._tail = b""
        self._offset = 0
        self.found = False
        self.captured = bytearray()

    def feed(self, chunk: bytes) -> None:
        if self.found:
            if len(self.captured) < CAPTURE:
                self.captured += chunk[: CAPTURE - len(self.captured)]
            return
        data = self._tail + chunk
        base = self._offset - len(self._tail)
        start = 0
        while True:
            at = data.find(MAGIC, start)
            if at < 0:
                break
            if (base + at) % 16 == 0:
                self.found = True
                self.captured = bytearray(data[at : at + CAPTURE])
                return
            start = at + 1
        self._offset += len(chunk)
        self._tail = data[-(len(MAGIC) - 1) :]

    def packages(self, location: str) -> list[Package]:
        if not self.found:
            return []
        return parse_buildinfo(bytes(self.captured), location)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data):
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            break
    raise ValueError("bad varint")


def parse_buildinfo(blob: bytes, location: str) -> list[Package]:
    """Packages of a buildinfo blob starting at the magic; [] for pre-1.18 layouts."""
    if len(blob) < HEADER or not blob.startswith(MAGIC) or not blob[15] & FLAG_INLINE:
        return []
    try:
        n, at = _varint(blob, HEADER)
        go_version = blob[at : at + n].decode("utf-8", "replace")
        at += n
        n, at = _varint(blob, at)
        modinfo = blob[at : at + n]
    except ValueError:
        return []
    if len(modinfo) >= 2 * _SENTINEL + 1:
        modinfo = modinfo[_SENTINEL:-_SENTINEL]
    packages: list[Package] = []
    if go_version.startswith("go"):
        version = go_version[2:].split(" ", 1)[0]
        packages.append(
            Package(
                "Go", "stdlib", version, purl("golang", "stdlib", version), None, None, (location,)
            )
        )
    modules: list[tuple[str, str]] = []
    for line in modinfo.decode("utf-8", "replace").split("\n"):
        fields = line.split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3:
            modules.append((fields[1], fields[2]))
        elif fields[0] == "=>" and len(fields) >= 3 and modules:
            modules[-1] = (fields[1], fields[2])
    for path, version in modules:
        if not version or version == "(devel)":
            continue
        namespace, _, short = path.rpartition("/")
        ref = purl("golang", short, version, namespace=namespace or None)
        packages.append(Package("Go", path, version, ref, locations=(location,)))
    return packages
