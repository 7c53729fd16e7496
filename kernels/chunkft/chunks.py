"""Byte-stream chunks: every trainable tensor laid end to end, cut into equal byte windows.

Each tensor is a run of *units* (the rows or columns a slice is made of) weighing its parameter
bytes plus its optimizer-state bytes per element. The stream is cut at `chunks − 1` points, each
moved to the unit boundary nearest the exact byte target, so every unit falls in exactly one
window and the windows are equal to within one unit (one row). ChunkFT's official code does the
same (`_split_by_byte_budget`); this is our own writing of it, with exact integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamTensor:
    """One tensor of the stream: `units` slices of `unit_elems` elements, each element weighing
    `elem_bytes` (parameter + optimizer state)."""

    units: int
    unit_elems: int
    elem_bytes: int

    @property
    def unit_bytes(self) -> int:
        return self.unit_elems * self.elem_bytes

    @property
    def nbytes(self) -> int:
        return self.units * self.unit_bytes


@dataclass(frozen=True)
class Piece:
    """Units [start, end) of tensor number `tensor`: one chunk's share of one tensor."""

    tensor: int
    start: int
    end: int


def partition(tensors: list[StreamTensor], chunks: int) -> list[list[Piece]]:
    """Cut the stream into `chunks` windows of (nearly) equal bytes; chunk k lists its pieces in
    stream order. Refuses a cut that would leave a window empty."""
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    if not tensors:
        raise ValueError("no trainable tensors to partition")
    for t in tensors:
        if t.units < 1 or t.unit_elems < 1 or t.elem_bytes < 1:
            raise ValueError(f"a tensor of the stream is empty: {t}")
    offsets = [0]
    for t in tensors:
        offsets.append(offsets[-1] + t.nbytes)
    total = offsets[-1]
    # cut k at the unit boundary nearest k·total/chunks, as a (tensor, unit) position
    cuts: list[tuple[int, int]] = [(0, 0)]
    i = 0
    for k in range(1, chunks):
        target_x = k * total  # the target, scaled by `chunks` to stay in integers
        while offsets[i + 1] * chunks < target_x:
            i += 1
        den = tensors[i].unit_bytes * chunks
        num = target_x - offsets[i] * chunks
        unit = min((2 * num + den) // (2 * den), tensors[i].units)
        cuts.append((i, unit))
    cuts.append((len(tensors) - 1, tensors[-1].units))
    out: list[list[Piece]] = []
    for k in range(chunks):
        (ti, ui), (tj, uj) = cuts[k], cuts[k + 1]
        pieces: list[Piece] = []
        for t in range(ti, tj + 1):
            s = ui if t == ti else 0
            e = uj if t == tj else tensors[t].units
            if e > s:
                pieces.append(Piece(t, s, e))
        if not pieces:
            most = sum(t.units for t in tensors)
            raise ValueError(
                f"{chunks} chunks leave window {k} empty: a unit (row) weighs more than a "
                f"window; use fewer chunks (the stream has {most} units, "
                f"{total} bytes)"
            )
        out.append(pieces)
    return out


def chunk_bytes(tensors: list[StreamTensor], pieces: list[Piece]) -> int:
    """Bytes (parameter + state) of one chunk."""
    return sum((p.end - p.start) * tensors[p.tensor].unit_bytes for p in pieces)
