"""Checkpoint consistency at the edges: the empty tree, equal sizes, and a real split view."""

from __future__ import annotations

import base64

import pytest
from nacl.signing import SigningKey

from pith_core.logcheck import LogCheckError, check_consistency
from pith_core.note import Checkpoint, sign_checkpoint
from pith_core.tlog import EMPTY_ROOT, leaf_hash, node_hash

ORIGIN = "example.org/log"
KEY = SigningKey(bytes(range(32)))
KEYS = [bytes(KEY.verify_key)]


def signed(size: int, root: bytes) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), ORIGIN, KEY)


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(2)]
ROOT_1 = LEAVES[0]
ROOT_2 = node_hash(LEAVES[0], LEAVES[1])


def test_the_empty_tree_is_extended_by_any_tree() -> None:
    empty = signed(0, EMPTY_ROOT)
    old, new = check_consistency(empty, empty, [], ORIGIN, KEYS)
    assert (old.size, new.size) == (0, 0)
    old, new = check_consistency(empty, signed(2, ROOT_2), [], ORIGIN, KEYS)
    assert (old.size, new.size) == (0, 2)


def test_a_size_zero_checkpoint_with_another_root_is_refused() -> None:
    with pytest.raises(LogCheckError, match="empty tree"):
        check_consistency(signed(0, ROOT_1), signed(2, ROOT_2), [], ORIGIN, KEYS)


def test_equal_sizes_must_name_the_same_root() -> None:
    same = signed(2, ROOT_2)
    assert check_consistency(same, same, [], ORIGIN, KEYS)[1].root == ROOT_2
    with pytest.raises(LogCheckError, match="different roots"):
        check_consistency(same, signed(2, ROOT_1), [], ORIGIN, KEYS)


def test_a_real_extension_verifies_and_a_rewritten_one_does_not() -> None:
    # RFC 9162: the proof from size 1 to size 2 is the second leaf's hash
    old, new = check_consistency(
        signed(1, ROOT_1), signed(2, ROOT_2), [b64(LEAVES[1])], ORIGIN, KEYS
    )
    assert (old.size, new.size) == (1, 2)
    rewritten = node_hash(leaf_hash(b"another entry"), LEAVES[1])
    with pytest.raises(LogCheckError, match="does not extend"):
        check_consistency(signed(1, ROOT_1), signed(2, rewritten), [b64(LEAVES[1])], ORIGIN, KEYS)


def test_a_note_bounds_and_deduplicates_its_signature_lines() -> None:
    from pith_core.note import MAX_SIGNATURES, NoteError, parse_note

    raw = signed(2, ROOT_2)
    text, sig_line = raw.rsplit("\n\n", 1)
    assert len(parse_note(raw).signatures) == 1
    with pytest.raises(NoteError, match="once"):
        parse_note(f"{text}\n\n{sig_line}{sig_line}")
    many = "".join(f"— w{i} {b64(bytes(8))}\n" for i in range(MAX_SIGNATURES + 1))
    with pytest.raises(NoteError, match="at most"):
        parse_note(f"{text}\n\n{many}")


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-05-01T00:00:00Z", True),
        ("2026-05-20T00:00:17.404117Z", True),  # a receipt's microsecond form
        ("2026-05-01T00:00:00 garbage!", False),
        ("2026-05-01T00:00:00.1234567Z", False),
    ],
)
def test_rotation_instants_are_utc_seconds_or_a_receipts_microseconds(text: str, ok: bool) -> None:
    from pith_core.rotation import _instant

    if ok:
        assert _instant(text) == text[:19] + "Z"
    else:
        with pytest.raises(ValueError):
            _instant(text)
