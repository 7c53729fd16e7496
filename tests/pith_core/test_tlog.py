"""The transparency log's math and formats against published vectors: transparency-dev/merkle's
RFC 6962 inclusion and consistency vectors (data/rfc6962_transparency_dev_vectors.json), the Go
sumdb note example, C2SP tlog-tiles path examples, and our own vectors
(data/pith_tlog_vectors.json), which an independent recursive RFC 6962 reference below rebuilds
and which carry, for every negative case, the reason it must fail.

Regenerate our vectors (only when the reference changes): python -m tests.pith_core.test_tlog
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from pith_core import note, tiles, tlog

DATA = Path(__file__).parent / "data"
TD = json.loads((DATA / "rfc6962_transparency_dev_vectors.json").read_text())
OURS_PATH = DATA / "pith_tlog_vectors.json"


def b64d(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


def b64e(values: list[bytes]) -> list[str]:
    return [base64.b64encode(v).decode() for v in values]


# ---- an independent reference: RFC 6962 §2.1 written recursively, hashlib only ----------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], whole: bool) -> list[bytes]:
    if m == len(d):
        return [] if whole else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], whole), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# ---- transparency-dev/merkle vectors -----------------------------------------------------------


def test_roots_of_the_reference_leaves() -> None:
    leaves = [tlog.leaf_hash(bytes.fromhex(x)) for x in TD["leaf_inputs_hex"]]
    for n, want in enumerate(TD["root_hashes_hex"]):
        assert tlog.tree_root(leaves[:n]).hex() == want


@pytest.mark.parametrize("path", sorted(TD["inclusion"]))
def test_transparency_dev_inclusion_vectors(path: str) -> None:
    v = TD["inclusion"][path]
    args = (v["leafIdx"], v["treeSize"], base64.b64decode(v["leafHash"]), b64d(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(*args, base64.b64decode(v["root"]))
    else:
        tlog.verify_inclusion(*args, base64.b64decode(v["root"]))


@pytest.mark.parametrize("path", sorted(TD["consistency"]))
def test_transparency_dev_consistency_vectors(path: str) -> None:
    v = TD["consistency"][path]
    args = (v["size1"], v["size2"], b64d(v["proof"]))
    roots = (base64.b64decode(v["root1"]), base64.b64decode(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(tlog.ProofError):
            tlog.verify_consistency(*args, *roots)
    else:
        tlog.verify_consistency(*args, *roots)


def _reference_store() -> dict[tlog.NodeId, bytes]:
    leaves = [tlog.leaf_hash(bytes.fromhex(x)) for x in TD["leaf_inputs_hex"]]
    new, _ = tlog.append_leaves(0, [], leaves)
    return {(level, idx): h for level, idx, h in new}


def test_generated_proofs_equal_the_published_happy_paths() -> None:
    store = _reference_store()
    for v in TD["inclusion"].values():
        if not v["wantErr"]:
            ranges = tlog.inclusion_ranges(v["leafIdx"], v["treeSize"])
            assert b64e(tlog.build_proof(ranges, store.__getitem__)) == (v["proof"] or [])
    for v in TD["consistency"].values():
        if not v["wantErr"] and v["size1"] < v["size2"]:
            ranges = tlog.consistency_ranges(v["size1"], v["size2"])
            assert b64e(tlog.build_proof(ranges, store.__getitem__)) == v["proof"]


def test_every_proof_up_to_70_leaves_matches_the_recursive_reference() -> None:
    entries = [f"entry {i}".encode() for i in range(70)]
    leaves = [tlog.leaf_hash(e) for e in entries]
    new, _ = tlog.append_leaves(0, [], leaves)
    store = {(level, idx): h for level, idx, h in new}
    for n in range(1, 71):
        root = ref_mth(entries[:n])
        # the frontier alone gives the root, and appending one at a time gives the same nodes
        assert tlog.root_from_frontier([store[i] for i in tlog.frontier(n)]) == root
        for m in range(n):
            proof = tlog.build_proof(tlog.inclusion_ranges(m, n), store.__getitem__)
            assert proof == ref_path(m, entries[:n])
            tlog.verify_inclusion(m, n, leaves[m], proof, root)
        for m in range(1, n):
            proof = tlog.build_proof(tlog.consistency_ranges(m, n), store.__getitem__)
            assert proof == ref_subproof(m, entries[:n], True)
            tlog.verify_consistency(m, n, proof, ref_mth(entries[:m]), root)


@pytest.mark.parametrize("seed", range(6))
def test_paths_of_many_leaves_are_the_recursive_references(seed: int) -> None:
    rnd = __import__("random").Random(seed)
    n = rnd.randrange(1, 300)
    entries = [f"entry {i}".encode() for i in range(n)]
    new, _ = tlog.append_leaves(0, [], [tlog.leaf_hash(e) for e in entries])
    store = {(level, idx): h for level, idx, h in new}
    # a run of neighbours (as a batch appends), scattered leaves, and every leaf
    start = rnd.randrange(n)
    for wanted in (
        range(start, min(n, start + rnd.randrange(1, 60))),
        rnd.sample(range(n), min(n, 9)),
        range(n),
    ):
        ranges, paths = tlog.inclusion_paths(wanted, n)
        assert set(paths) == set(wanted)
        assert len(ranges) == len(set(ranges))  # each range once
        for m, path in paths.items():
            proof = tlog.build_proof([ranges[k] for k in path], store.__getitem__)
            assert proof == ref_path(m, entries)


def test_paths_of_leaves_outside_the_tree_are_refused() -> None:
    assert tlog.inclusion_paths([], 0) == ([], {})
    for wanted, size in (([3], 3), ([-1, 0], 4), ([0, 1], 0)):
        with pytest.raises(tlog.ProofError):
            tlog.inclusion_paths(wanted, size)


def test_appending_in_pieces_gives_the_same_nodes_as_at_once() -> None:
    leaves = [tlog.leaf_hash(i.to_bytes(2, "big")) for i in range(300)]
    whole, _ = tlog.append_leaves(0, [], leaves)
    size, front, pieces = 0, [], []
    for cut in (1, 2, 7, 64, 255, 256, 257, 300):
        new, front = tlog.append_leaves(size, front, leaves[size:cut])
        pieces += new
        size = cut
    assert sorted(pieces) == sorted(whole)
    with pytest.raises(ValueError):  # a frontier of the wrong shape is refused
        tlog.append_leaves(3, front, leaves[:1])


# ---- our own vectors ---------------------------------------------------------------------------

VECTOR_SEED = bytes(range(32))  # a fixed, public test key: never a real one
VECTOR_ORIGIN = "example.org/pith-test-vectors/log"


def build_vectors() -> dict[str, Any]:
    """Our vectors from the recursive reference alone (entries shaped like Pith events)."""
    entries = [
        json.dumps({"event_id": f"sha256:{i:064x}", "seq": i}, separators=(",", ":")).encode()
        for i in range(13)
    ]
    key = SigningKey(VECTOR_SEED)
    root = ref_mth(entries)
    body = f"{VECTOR_ORIGIN}\n13\n{base64.b64encode(root).decode()}\n"
    sig = key.sign(body.encode()).signature
    key_hash = _h(VECTOR_ORIGIN.encode() + b"\n\x01" + bytes(key.verify_key))[:4]
    signed = body + f"\n\u2014 {VECTOR_ORIGIN} {base64.b64encode(key_hash + sig).decode()}\n"
    incl = [(m, n) for n in (1, 2, 5, 8, 13) for m in sorted({0, n // 2, n - 1})]
    cons = [(m, n) for n in (2, 5, 8, 13) for m in sorted({1, n // 2, n - 1}) if m < n]
    p13 = ref_path(5, entries)
    c = ref_subproof(6, entries, True)
    r6 = ref_mth(entries[:6])
    leaf5 = _h(b"\x00" + entries[5])
    return {
        "description": "Pith transparency log vectors: RFC 6962 hashing over the entries "
        "(hex), inclusion and consistency proofs (base64), and a C2SP checkpoint signed with "
        "the Ed25519 seed given here (public, for tests only). Built by the recursive "
        "reference in tests/pith_core/test_tlog.py.",
        "entries_hex": [e.hex() for e in entries],
        "roots_hex": {str(n): ref_mth(entries[:n]).hex() for n in range(14)},
        "inclusion": [
            {
                "leaf_index": m,
                "tree_size": n,
                "proof": b64e(ref_path(m, entries[:n])),
            }
            for m, n in incl
        ],
        "consistency": [
            {"size1": m, "size2": n, "proof": b64e(ref_subproof(m, entries[:n], True))}
            for m, n in cons
        ],
        "checkpoint": {
            "seed_hex": VECTOR_SEED.hex(),
            "origin": VECTOR_ORIGIN,
            "verifier_key": f"{VECTOR_ORIGIN}+{key_hash.hex()}+"
            + base64.b64encode(b"\x01" + bytes(key.verify_key)).decode(),
            "signed_note": signed,
        },
        "negative_inclusion": [
            {
                "reason": "the leaf index is the tree size: no such leaf",
                "leaf_index": 13,
                "tree_size": 13,
                "leaf_hex": leaf5.hex(),
                "proof": b64e(p13),
            },
            {
                "reason": "a proof hash with one bit flipped leads to another root",
                "leaf_index": 5,
                "tree_size": 13,
                "leaf_hex": leaf5.hex(),
                "proof": b64e([bytes([p13[0][0] ^ 1]) + p13[0][1:], *p13[1:]]),
            },
            {
                "reason": "the proof is one hash short",
                "leaf_index": 5,
                "tree_size": 13,
                "leaf_hex": leaf5.hex(),
                "proof": b64e(p13[:-1]),
            },
            {
                "reason": "the proof has one hash too many",
                "leaf_index": 5,
                "tree_size": 13,
                "leaf_hex": leaf5.hex(),
                "proof": b64e([*p13, root]),
            },
            {
                "reason": "the entry hashed without the 0x00 leaf prefix (second-preimage guard)",
                "leaf_index": 5,
                "tree_size": 13,
                "leaf_hex": _h(entries[5]).hex(),
                "proof": b64e(p13),
            },
            {
                "reason": "the right proof for another index",
                "leaf_index": 4,
                "tree_size": 13,
                "leaf_hex": leaf5.hex(),
                "proof": b64e(p13),
            },
        ],
        "negative_consistency": [
            {
                "reason": "the sizes are swapped",
                "size1": 13,
                "size2": 6,
                "root1_hex": root.hex(),
                "root2_hex": r6.hex(),
                "proof": b64e(c),
            },
            {
                "reason": "the old root is not the tree's root at size 6 (a rewritten history)",
                "size1": 6,
                "size2": 13,
                "root1_hex": ref_mth(entries[1:7]).hex(),
                "root2_hex": root.hex(),
                "proof": b64e(c),
            },
            {
                "reason": "the proof's hashes are in the wrong order",
                "size1": 6,
                "size2": 13,
                "root1_hex": r6.hex(),
                "root2_hex": root.hex(),
                "proof": b64e(c[::-1]),
            },
            {
                "reason": "an empty proof between different sizes",
                "size1": 6,
                "size2": 13,
                "root1_hex": r6.hex(),
                "root2_hex": root.hex(),
                "proof": [],
            },
            {
                "reason": "equal sizes with different roots: a split view",
                "size1": 13,
                "size2": 13,
                "root1_hex": root.hex(),
                "root2_hex": ref_mth([*entries[:12], b"other"]).hex(),
                "proof": [],
            },
            {
                "reason": "a proof from the empty tree proves nothing",
                "size1": 0,
                "size2": 13,
                "root1_hex": _h(b"").hex(),
                "root2_hex": root.hex(),
                "proof": [],
            },
        ],
        "negative_checkpoints": [
            {
                "reason": "the tree size was changed after signing",
                "signed_note": signed.replace("\n13\n", "\n14\n", 1),
            },
            {
                "reason": "the signature line names another key (its key hash differs)",
                "signed_note": signed.replace(
                    f"\u2014 {VECTOR_ORIGIN} ", "\u2014 other.example ", 1
                ),
            },
            {
                "reason": "no blank line between the body and the signature",
                "signed_note": signed.replace("\n\n", "\n", 1),
            },
        ],
    }


def test_our_committed_vectors_are_the_references() -> None:
    assert json.loads(OURS_PATH.read_text()) == build_vectors()


def test_our_vectors_verify_and_their_negative_cases_fail() -> None:
    v = json.loads(OURS_PATH.read_text())
    entries = [bytes.fromhex(e) for e in v["entries_hex"]]
    leaves = [tlog.leaf_hash(e) for e in entries]
    for n, root in v["roots_hex"].items():
        assert tlog.tree_root(leaves[: int(n)]).hex() == root
    for case in v["inclusion"]:
        root = bytes.fromhex(v["roots_hex"][str(case["tree_size"])])
        i = case["leaf_index"]
        tlog.verify_inclusion(i, case["tree_size"], leaves[i], b64d(case["proof"]), root)
    for case in v["consistency"]:
        r1 = bytes.fromhex(v["roots_hex"][str(case["size1"])])
        r2 = bytes.fromhex(v["roots_hex"][str(case["size2"])])
        tlog.verify_consistency(case["size1"], case["size2"], b64d(case["proof"]), r1, r2)
    for case in v["negative_inclusion"]:
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(
                case["leaf_index"],
                case["tree_size"],
                bytes.fromhex(case["leaf_hex"]),
                b64d(case["proof"]),
                bytes.fromhex(v["roots_hex"]["13"]),
            )
    for case in v["negative_consistency"]:
        with pytest.raises(tlog.ProofError):
            tlog.verify_consistency(
                case["size1"],
                case["size2"],
                b64d(case["proof"]),
                bytes.fromhex(case["root1_hex"]),
                bytes.fromhex(case["root2_hex"]),
            )
    cp = v["checkpoint"]
    verifier = note.Verifier.parse(cp["verifier_key"])
    checkpoint, _ = note.open_checkpoint(cp["signed_note"], verifier, cp["origin"])
    assert (checkpoint.size, checkpoint.root.hex()) == (13, v["roots_hex"]["13"])
    key = SigningKey(bytes.fromhex(cp["seed_hex"]))
    assert note.sign_checkpoint(checkpoint, cp["origin"], key) == cp["signed_note"]
    for case in v["negative_checkpoints"]:
        with pytest.raises(note.NoteError):
            note.open_checkpoint(case["signed_note"], verifier, cp["origin"])


# ---- C2SP signed note, checkpoint, cosignature -------------------------------------------------

GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_signed_notes_match_the_go_reference_example_byte_for_byte() -> None:
    """golang.org/x/mod/sumdb/note's documented example key, text and signed note."""
    key = SigningKey(GO_SKEY_SEED)
    signed = note.Note(GO_TEXT, (note.sign_note(GO_TEXT, "PeterNeumann", key),)).serialize()
    assert signed == GO_NOTE
    assert note.verifier_key("PeterNeumann", bytes(key.verify_key)) == GO_VKEY
    opened, good = note.open_note(GO_NOTE, [note.Verifier.parse(GO_VKEY)])
    assert opened.text == GO_TEXT and [v.name for v in good] == ["PeterNeumann"]
    # a changed text, or a signature by the same name under another key, does not verify
    with pytest.raises(note.NoteError):
        note.open_note(GO_NOTE.replace("answer", "Answer"), [note.Verifier.parse(GO_VKEY)])
    other = note.Verifier("PeterNeumann", bytes(SigningKey.generate().verify_key))
    with pytest.raises(note.NoteError, match="no signature"):
        note.open_note(GO_NOTE, [other])


def test_cosignatures_follow_tlog_cosignature() -> None:
    log_key, witness = SigningKey.generate(), SigningKey.generate()
    cp = note.Checkpoint("example.com/behind-the-sofa", 20852163, bytes(32))
    signed = note.sign_checkpoint(cp, cp.origin, log_key)
    sig = note.cosign(cp.text(), "witness.example.com/w1", witness, 1679315147)
    # the signed message is the spec's: header, time line, then the checkpoint body
    message = b"cosignature/v1\ntime 1679315147\n" + cp.text().encode()
    witness.verify_key.verify(message, sig.signature[8:])
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big")
    expected_hash = _h(b"witness.example.com/w1\n\x04" + bytes(witness.verify_key))[:4]
    assert sig.key_hash == expected_hash
    both = note.add_signatures(signed, [sig])
    wv = note.Verifier.parse(
        note.verifier_key("witness.example.com/w1", bytes(witness.verify_key), 0x04)
    )
    assert note.count_cosigners(note.parse_note(both), [wv]) == [wv]
    # a note signature (type 0x01) by the witness key is not a cosignature
    plain = note.sign_note(cp.text(), "witness.example.com/w1", witness)
    assert note.count_cosigners(note.parse_note(note.add_signatures(signed, [plain])), [wv]) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("o\n013\n" + base64.b64encode(bytes(32)).decode() + "\n", "leading zero in the size"),
        ("o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", "a 31-byte root"),
        ("\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", "an empty origin"),
        ("o\n1\n" + base64.b64encode(bytes(32)).decode(), "no final newline"),
        ("o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n", "an empty extension line"),
    ],
)
def test_malformed_checkpoints_are_refused(body: str, why: str) -> None:
    with pytest.raises(note.NoteError):
        note.parse_checkpoint(body)


# ---- tlog-tiles --------------------------------------------------------------------------------


def test_tile_paths_as_c2sp_writes_them() -> None:
    assert tiles.encode_index(1234067) == "x001/x234/067"  # the spec's example
    assert tiles.encode_index(0) == "000"
    assert tiles.Tile(0, 1234067).path() == "tile/0/x001/x234/067"
    assert tiles.Tile(tiles.ENTRIES, 5, 17).path() == "tile/entries/005.p/17"
    for t in (tiles.Tile(2, 1234067), tiles.Tile(tiles.ENTRIES, 1000, 3), tiles.Tile(0, 7)):
        assert tiles.parse_tile_path(t.path()) == t
    for bad in ("tile/0/1", "tile/0/x000/001", "tile/0/000.p/256", "tile/0/000.p/0", "tile/64/000"):
        with pytest.raises(tiles.TileError):
            tiles.parse_tile_path(bad)


def test_tiles_of_a_tree_and_entry_bundles() -> None:
    got = {t.path() for t in tiles.tiles_of(70_000)}
    assert {
        "tile/0/272",
        "tile/0/273.p/112",
        "tile/1/000",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    } <= got
    assert "tile/entries/273.p/112" in got and "tile/2/001" not in got
    assert tiles.tile_for(tiles.Tile(0, 273, 100), 70_000) is not None  # an older partial width
    assert tiles.tile_for(tiles.Tile(0, 273, 113), 70_000) is None
    bundle = tiles.encode_entry_bundle([b"", b"a", b"x" * 300])
    assert bundle[:5] == b"\x00\x00\x00\x01a"
    assert tiles.decode_entry_bundle(bundle) == [b"", b"a", b"x" * 300]
    with pytest.raises(tiles.TileError):
        tiles.decode_entry_bundle(bundle[:-1])
    with pytest.raises(tiles.TileError):
        tiles.encode_entry_bundle([b"x" * 65_536])


if __name__ == "__main__":
    OURS_PATH.write_text(json.dumps(build_vectors(), indent=1, sort_keys=True) + "\n")
