"""C2SP tlog-tiles: the paths, widths and bytes of hash tiles and entry bundles, so any static
web server or CDN can serve a copy of the log and any tlog-tiles client can read it.

A tile at level L, index N holds the hashes of Merkle level 8·L, nodes N·256 … N·256+W−1, as
W·32 raw bytes; W = 256 for a full tile (immutable forever), fewer for the partial tile at the
right edge (path suffix `.p/<W>`). An entry bundle holds entries N·256 … N·256+W−1, each as a
big-endian uint16 length and its bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .tlog import HASH_SIZE, NodeId

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_SIZE = 0xFFFF
ENTRIES = "entries"
_INDEX_PART = re.compile(r"x[0-9]{3}")
_LAST_PART = re.compile(r"[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


class TileError(ValueError):
    """A path that names no tile, or tile bytes that are malformed."""


@dataclass(frozen=True)
class Tile:
    level: int | str  # a hash tile's level, or ENTRIES for an entry bundle
    index: int
    width: int = TILE_WIDTH

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """The path under the log's prefix, e.g. `tile/0/x001/234` or `tile/entries/000.p/7`."""
        return f"tile/{self.level}/{encode_index(self.index)}" + (
            "" if self.is_full else f".p/{self.width}"
        )

    def node_ids(self) -> list[NodeId]:
        """The Merkle nodes a hash tile holds, left to right."""
        if self.level == ENTRIES:
            raise TileError("an entry bundle holds entries, not hashes")
        assert isinstance(self.level, int)
        first = self.index * TILE_WIDTH
        return [(self.level * TILE_HEIGHT, first + i) for i in range(self.width)]

    def leaf_range(self) -> tuple[int, int]:
        """The leaves an entry bundle holds, [begin, end)."""
        return self.index * TILE_WIDTH, self.index * TILE_WIDTH + self.width


def encode_index(n: int) -> str:
    """N as tlog-tiles writes it: 3-digit groups, all but the last prefixed with `x`."""
    if n < 0:
        raise TileError("a tile index is not negative")
    digits = f"{n:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def parse_tile_path(path: str) -> Tile:
    """The tile a path names (`tile/…` without the log prefix), TileError otherwise."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"{path!r} is not a tile path")
    level_text, rest = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise TileError(f"{path!r}: a partial tile's width is 1 to 255")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    if not rest or not _LAST_PART.fullmatch(rest[-1]):
        raise TileError(f"{path!r}: the index ends in a 3-digit group")
    if any(not _INDEX_PART.fullmatch(p) for p in rest[:-1]):
        raise TileError(f"{path!r}: leading index groups are x and 3 digits")
    index = int("".join(p.lstrip("x") for p in rest))
    if len(rest) > 1 and rest[0] == "x000":
        raise TileError(f"{path!r}: the index has no leading zero groups")
    if level_text == ENTRIES:
        return Tile(ENTRIES, index, width)
    if not _LEVEL.fullmatch(level_text) or int(level_text) > 63:
        raise TileError(f"{path!r}: the level is a decimal from 0 to 63")
    return Tile(int(level_text), index, width)


def level_width(size: int, level: int) -> int:
    """How many complete nodes Merkle level 8·`level` has in a tree of `size` leaves."""
    return size >> (level * TILE_HEIGHT)


def tile_for(tile: Tile, size: int) -> Tile | None:
    """`tile` as a tree of `size` leaves serves it: itself if full and complete, the partial
    tile of the right width, or None when the tree has nothing there (or the path asks for a
    partial width it does not have: partial tiles exist only at the current edge)."""
    nodes = level_width(size, 0) if tile.level == ENTRIES else level_width(size, int(tile.level))
    available = nodes - tile.index * TILE_WIDTH
    if available <= 0:
        return None
    if available >= TILE_WIDTH:
        return Tile(tile.level, tile.index) if tile.is_full else None
    if tile.is_full or tile.width > available:
        return None
    return tile


def tiles_of(size: int) -> Iterator[Tile]:
    """Every tile (hash tiles and entry bundles) of a tree of `size` leaves, as it serves them."""
    level = 0
    while level == 0 or level_width(size, level) > 0:
        count = level_width(size, level)
        for index in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            tile = Tile(level, index, min(TILE_WIDTH, count - index * TILE_WIDTH))
            yield tile
            if level == 0:
                yield Tile(ENTRIES, tile.index, tile.width)
        level += 1
        if count <= 1:
            break


def tile_bytes(tile: Tile, lookup: Callable[[NodeId], bytes]) -> bytes:
    return b"".join(lookup(n) for n in tile.node_ids())


def split_tile(tile: Tile, data: bytes) -> list[bytes]:
    if len(data) != tile.width * HASH_SIZE:
        raise TileError(f"tile {tile.path()} has {len(data)} bytes, not {tile.width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TileError(f"an entry of {len(e)} bytes is over the {MAX_ENTRY_SIZE}-byte limit")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError("an entry bundle ends inside a length")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise TileError("an entry bundle ends inside an entry")
        out.append(data[pos : pos + n])
        pos += n
    return out
