"""The log as static tiles (c2sp.org/tlog-tiles): paths, what to write, entry bundles.

A tile holds up to 256 consecutive hashes of one tree level (tile level L holds tree
level 8·L); a full tile never changes and a partial one is published as `.p/<width>`.
Anyone can compute any proof, and rebuild the tree, from tiles alone, so followers and
auditors read a node's log from its object store (or a CDN in front of it) without
touching its database.

Departure from the spec: the spec's entry bundles frame each entry with a uint16 length,
and Zoll's entries (a DSSE envelope, an SBOM statement) can be larger than 64 KiB. As the
spec requires for another encoding, Zoll serves its bundles at another path,
`tile/zoll-entries/<N>[.p/<W>]`, framed by big-endian uint32 lengths.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
ENTRIES: Final = "zoll-entries"
MAX_ENTRY: Final = 64 << 20


class TileError(ValueError):
    """A tile path or bundle is malformed."""


@dataclass(frozen=True, order=True)
class Tile:
    level: int
    """Tile level (tree level 8·level), or -1 for an entry bundle."""
    index: int
    width: int

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    def path(self) -> str:
        kind = ENTRIES if self.level < 0 else str(self.level)
        path = f"tile/{kind}/{_index_path(self.index)}"
        return path if self.full else f"{path}.p/{self.width}"

    def full_path(self) -> str:
        kind = ENTRIES if self.level < 0 else str(self.level)
        return f"tile/{kind}/{_index_path(self.index)}"

    @property
    def tree_level(self) -> int:
        return max(self.level, 0) * TILE_HEIGHT

    @property
    def first(self) -> int:
        """Index (at its tree level) of the first hash or entry in the tile."""
        return self.index * TILE_WIDTH


def _index_path(index: int) -> str:
    """1234067 → x001/x234/067: groups of three digits, all but the last with `x`."""
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def parse_tile_path(path: str) -> Tile:
    """`tile/<L or zoll-entries>/<N>[.p/<W>]` → Tile; TileError otherwise."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"not a tile path: {path!r}")
    kind, rest = parts[1], parts[2:]
    if kind == ENTRIES:
        level = -1
    elif kind.isdigit() and len(kind) <= 2:
        level = int(kind)
    else:
        raise TileError(f"unknown tile level {kind!r}")
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not rest[-1].isdigit() or not 1 <= int(rest[-1]) < TILE_WIDTH:
            raise TileError(f"partial width {rest[-1]!r} must be 1–255")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][: -len(".p")]]
    if not all(len(g) == 4 and g[0] == "x" and g[1:].isdigit() for g in rest[:-1]):
        raise TileError(f"malformed tile index in {path!r}")
    if len(rest[-1]) != 3 or not rest[-1].isdigit():
        raise TileError(f"malformed tile index in {path!r}")
    index = int("".join(g.lstrip("x") for g in rest))
    if _index_path(index) != "/".join(rest):
        raise TileError(f"tile index in {path!r} is not in canonical form")
    return Tile(level, index, width)


def tiles_between(old_size: int, new_size: int) -> list[Tile]:
    """Every tile (hash tiles of all levels, and entry bundles) whose content differs
    between a tree of `old_size` and one of `new_size` leaves, at its new width."""
    out: list[Tile] = []
    for level in range(-1, 64 // TILE_HEIGHT):
        height = max(level, 0) * TILE_HEIGHT
        old_count, new_count = old_size >> height, new_size >> height
        if new_count == 0:
            break
        for index in range(old_count // TILE_WIDTH, (new_count - 1) // TILE_WIDTH + 1):
            width = min(TILE_WIDTH, new_count - index * TILE_WIDTH)
            before = min(TILE_WIDTH, max(old_count - index * TILE_WIDTH, 0))
            if width != before:
                out.append(Tile(level, index, width))
    return out


def partial_tiles(size: int) -> list[Tile]:
    """The partial tiles a tree of `size` leaves has (the rightmost of each level)."""
    out = []
    for level in range(-1, 64 // TILE_HEIGHT):
        count = size >> (max(level, 0) * TILE_HEIGHT)
        if count == 0:
            break
        if count % TILE_WIDTH:
            out.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
    return out


def encode_bundle(entries: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(e)) + e for e in entries)


def decode_bundle(data: bytes, expected: int | None = None) -> list[bytes]:
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise TileError("entry bundle ends inside a length prefix")
        (size,) = struct.unpack_from(">I", data, offset)
        if size > MAX_ENTRY or offset + 4 + size > len(data):
            raise TileError("entry bundle has an entry longer than the bundle")
        entries.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    if expected is not None and len(entries) != expected:
        raise TileError(f"entry bundle holds {len(entries)} entries, not {expected}")
    return entries
