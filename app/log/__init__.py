"""The transparency log: every accepted event is a leaf of one append-only Merkle tree."""
