"""RFC 6962 / RFC 9162 Merkle tree math for the transparency log: hashing, the perfect subtrees a
log stores, inclusion and consistency proofs and their verification.

A node is addressed by `(level, index)`: the perfect subtree over leaves
`[index * 2**level, (index + 1) * 2**level)`. A log only ever stores such complete nodes (they
never change once written, which is what makes tiles immutable); every proof element and every
root is a fold of a few of them. Proof *generation* here is split in two so storage stays outside:
`inclusion_ranges` / `consistency_ranges` name the leaf ranges whose hashes a proof needs,
`range_nodes` names the stored nodes each range folds from, and `fold_range` folds them.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index)
LeafRange = tuple[int, int]  # [begin, end)


class ProofError(ValueError):
    """A proof that does not verify, or arguments no proof can exist for."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below `n` (n >= 2): where RFC 6962 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees that tile `[begin, end)`, left to right (its compact range)."""
    if not 0 <= begin <= end:
        raise ValueError(f"bad range [{begin}, {end})")
    width = end - begin
    if width and not width & (width - 1) and not begin & (width - 1):  # one perfect subtree
        level = width.bit_length() - 1
        return [(level, begin >> level)]
    out: list[NodeId] = []
    while begin < end:
        # The largest aligned block starting at `begin` that still fits.
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while (1 << level) > end - begin:
            level -= 1
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its compact range's hashes (left to right), for the ranges RFC 6962
    proofs and roots use (each starts at a multiple of a power of two at least its width)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[LeafRange]:
    """The leaf ranges of the audit path PATH(index, D[size]) (RFC 6962 §2.1.1), bottom-up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    out: list[LeafRange] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def inclusion_paths(
    indices: Iterable[int], size: int
) -> tuple[list[LeafRange], dict[int, list[int]]]:
    """The audit paths of many leaves at once: the distinct leaf ranges they use, and per leaf
    the positions of its path's ranges in that list, bottom-up (`inclusion_ranges(i, size)` is
    `[ranges[k] for k in paths[i]]`). Neighbouring leaves share the upper part of their paths,
    so the tree is descended once for all of them (a run of k leaves takes about 2k steps, not
    k·log2(size)) and each range comes once, to be folded once."""
    wanted = sorted(set(indices))
    if wanted and not (wanted[0] >= 0 and wanted[-1] < size):
        bad = wanted[0] if wanted[0] < 0 else wanted[-1]
        raise ProofError(f"leaf {bad} is not in a tree of size {size}")
    ranges: list[LeafRange] = []
    paths: dict[int, list[int]] = {}
    # (subtree [lo, hi), the wanted leaves in it as wanted[a:b], its path so far top-down)
    stack: list[tuple[int, int, int, int, tuple[int, ...]]] = [(0, size, 0, len(wanted), ())]
    while stack and wanted:
        lo, hi, a, b, above = stack.pop()
        if hi - lo == 1:
            path = list(above)
            path.reverse()
            paths[wanted[a]] = path
            continue
        mid = lo + _split(hi - lo)
        m = bisect.bisect_left(wanted, mid, a, b)
        if a < m:
            stack.append((lo, mid, a, m, (*above, len(ranges))))
            ranges.append((mid, hi))
        if m < b:
            stack.append((mid, hi, m, b, (*above, len(ranges))))
            ranges.append((lo, mid))
    return ranges, paths


def consistency_ranges(size1: int, size2: int) -> list[LeafRange]:
    """The leaf ranges of PROOF(size1, D[size2]) (RFC 6962 §2.1.2), in proof order."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    out: list[LeafRange] = []
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        out.append((lo, hi))
    out.reverse()
    return out


def proof_nodes(ranges: Iterable[LeafRange]) -> set[NodeId]:
    """Every stored node the given ranges fold from (to fetch them in one query)."""
    return {node for r in ranges for node in range_nodes(*r)}


def build_proof(ranges: Sequence[LeafRange], lookup: Callable[[NodeId], bytes]) -> list[bytes]:
    return [fold_range([lookup(n) for n in range_nodes(*r)]) for r in ranges]


def frontier(size: int) -> list[NodeId]:
    """The perfect subtrees of a tree of `size` leaves, left to right: its root folds from them
    and the next append needs only them (at most log2(size) + 1 nodes)."""
    return range_nodes(0, size)


def root_from_frontier(hashes: Sequence[bytes]) -> bytes:
    return fold_range(hashes)


def append_leaves(
    size: int, frontier_hashes: Sequence[bytes], leaf_hashes: Iterable[bytes]
) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Append leaves to a tree of `size` known only by its frontier; return every new complete
    node `(level, index, hash)` (leaves included) and the new frontier. O(log n) per leaf."""
    ids = frontier(size)
    if len(ids) != len(frontier_hashes):
        raise ValueError(f"a tree of size {size} has {len(ids)} frontier nodes")
    stack: list[tuple[int, bytes]] = [
        (level, h) for (level, _), h in zip(ids, frontier_hashes, strict=True)
    ]
    new: list[tuple[int, int, bytes]] = []
    for h in leaf_hashes:
        if len(h) != HASH_SIZE:
            raise ValueError("a leaf hash has 32 bytes")
        index = size
        level, acc = 0, h
        new.append((0, index, acc))
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            acc = node_hash(left, acc)
            level += 1
            new.append((level, index >> level, acc))
        stack.append((level, acc))
        size += 1
    return new, [h for _, h in stack]


def tree_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes (a reference and for small trees)."""
    _, front = append_leaves(0, [], leaf_hashes)
    return root_from_frontier(front)


def _check_hashes(*hashes: bytes) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("every hash in a proof has 32 bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root `proof` implies for `leaf` at `index` of a tree of `size` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    _check_hashes(leaf, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path to the root")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows `leaf` at `index` under `root` of `size` leaves."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof leads to another root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ProofError unless the tree of `size2` with `root2` extends the tree of `size1` with
    `root1` (RFC 9162 §2.1.4.2). An empty first tree proves nothing and is refused, as
    transparency-dev/merkle does."""
    if size1 <= 0 or size2 < size1:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("trees of one size need an empty proof")
        if root1 != root2:
            raise ProofError("two different roots for one tree size")
        return
    _check_hashes(root1, root2, *proof)
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path to the root")
    if fr != root1:
        raise ProofError("the consistency proof does not lead to the first root")
    if sr != root2:
        raise ProofError("the consistency proof does not lead to the second root")
