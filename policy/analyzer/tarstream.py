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
from registry.oci.tarformat import TarBytes as ByteStream
from registry.oci.tarformat import TarError, TarWalker

__all__ = ["ByteStream", "TarEntry", "TarError", "TarReader"]
CAPABILITY_XATTR: Final = "SCHILY.xattr.security.capability"


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
        self._walker = TarWalker(
            stream,
            max_header_bytes=limits.max_header_bytes,
            max_path_bytes=limits.max_path_bytes,
            errors="backslashreplace",  # names as reported: undecodable bytes spelled out
            limit=LimitExceeded,
        )

    def data(self) -> Iterator[bytes]:
        """The current entry's content in chunks; what is not consumed is skipped later."""
        return self._walker.data(self.limits.max_file_bytes)

    def next(self) -> TarEntry | None:
        raw = self._walker.next()
        if raw is None:
            return None
        if raw.kind == "file" and raw.size > self.limits.max_file_bytes:
            raise LimitExceeded(
                "max_file_bytes",
                f"{raw.name} is {raw.size} bytes, over {self.limits.max_file_bytes}",
            )
        return TarEntry(
            name=raw.name,
            kind=raw.kind,
            mode=raw.mode,
            uid=raw.uid,
            gid=raw.gid,
            size=raw.size,
            linkname=raw.linkname,
            capability=CAPABILITY_XATTR in raw.merged,
            offset=raw.offset,
            pax=raw.pax,
        )
