"""Key rotation: a statement signed by the old key; the key history it gives; signatures made
before a rotation still verify, a revoked key's later ones do not, a forged or out-of-order
rotation is refused."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from pith_core import note, rotation
from pith_core.keys import fingerprint


def _keys(n: int) -> list[SigningKey]:
    return [SigningKey.generate() for _ in range(n)]


def _pub(k: SigningKey) -> bytes:
    return bytes(k.verify_key)


def test_a_rotation_gives_each_key_its_window() -> None:
    k1, k2, k3 = _keys(3)
    r1 = rotation.sign_rotation(
        k1, "k1", _pub(k2), "k2", takes_over_at="2026-06-01T00:00:00Z", checkpoints_through=10
    )
    r2 = rotation.sign_rotation(
        k2, "k2", _pub(k3), "k3", takes_over_at="2026-09-01T00:00:00Z", checkpoints_through=25
    )
    windows = rotation.key_history(_pub(k1), [r1, r2])
    assert [(w.key_id, w.valid_from, w.valid_until) for w in windows] == [
        ("k1", None, "2026-06-01T00:00:00Z"),
        ("k2", "2026-06-01T00:00:00Z", "2026-09-01T00:00:00Z"),
        ("k3", "2026-09-01T00:00:00Z", None),
    ]
    # signatures dated inside a key's window stand; outside it they do not
    assert rotation.valid_at(windows, _pub(k1), "2026-05-31T23:59:59Z")
    assert not rotation.valid_at(windows, _pub(k1), "2026-06-01T00:00:00Z")
    assert rotation.valid_at(windows, _pub(k2), "2026-07-01T00:00:00.123456Z")  # receipt form
    assert not rotation.valid_at(windows, _pub(k3), "2026-08-31T00:00:00Z")
    # checkpoints: the old key up to its last tree size, the new one from there on
    assert rotation.valid_for_checkpoint(windows, _pub(k1), 10)
    assert not rotation.valid_for_checkpoint(windows, _pub(k1), 11)
    assert rotation.valid_for_checkpoint(windows, _pub(k2), 10)
    assert not rotation.valid_for_checkpoint(windows, _pub(k2), 9)
    assert rotation.valid_for_checkpoint(windows, _pub(k3), 10**9)
    # a client that pinned k2 starts its history there
    assert [w.key_id for w in rotation.key_history(_pub(k2), [r1, r2])] == ["k2", "k3"]


def test_a_revoked_key_signs_nothing_after_its_revocation() -> None:
    k1, k2 = _keys(2)
    r = rotation.sign_rotation(
        k1,
        "k1",
        _pub(k2),
        "k2",
        takes_over_at="2026-06-01T00:00:00Z",
        checkpoints_through=10,
        revoked_since="2026-05-01T00:00:00Z",
    )
    (old, new) = rotation.key_history(_pub(k1), [r])
    assert old.revoked and old.valid_until == "2026-05-01T00:00:00Z"
    assert rotation.valid_at([old, new], _pub(k1), "2026-04-30T12:00:00Z")  # before: stands
    assert not rotation.valid_at([old, new], _pub(k1), "2026-05-15T00:00:00Z")  # after: void


def test_forged_tampered_and_out_of_order_rotations_are_refused() -> None:
    k1, k2, k3 = _keys(3)
    forged = rotation.sign_rotation(  # signed by the new key, claiming to retire k1
        k2, "k1", _pub(k3), "k3", takes_over_at="2026-06-01T00:00:00Z", checkpoints_through=1
    )
    forged["old_public_key_hex"] = _pub(k1).hex()
    with pytest.raises(rotation.RotationError, match="not signed by the key it retires"):
        rotation.verify_rotation(forged)
    good = rotation.sign_rotation(
        k1, "k1", _pub(k2), "k2", takes_over_at="2026-06-01T00:00:00Z", checkpoints_through=5
    )
    tampered = {**good, "takes_over_at": "2027-01-01T00:00:00Z"}
    with pytest.raises(rotation.RotationError):
        rotation.verify_rotation(tampered)
    with pytest.raises(rotation.RotationError, match="exactly the fields"):
        rotation.verify_rotation({**good, "extra": 1})
    earlier = rotation.sign_rotation(
        k2, "k2", _pub(k3), "k3", takes_over_at="2026-05-01T00:00:00Z", checkpoints_through=6
    )
    with pytest.raises(rotation.RotationError, match="time order"):
        rotation.key_history(_pub(k1), [good, earlier])
    skipped = rotation.sign_rotation(
        k3, "k3", _pub(k1), "k1", takes_over_at="2026-07-01T00:00:00Z", checkpoints_through=6
    )
    with pytest.raises(rotation.RotationError, match="not the key then current"):
        rotation.key_history(_pub(k1), [good, skipped])


def test_windowed_checks_of_a_document() -> None:
    k1, k2 = _keys(2)
    r = rotation.sign_rotation(
        k1, "k1", _pub(k2), "k2", takes_over_at="2026-06-01T00:00:00Z", checkpoints_through=3
    )
    windows = rotation.key_history(_pub(k1), [r])
    origin = "example.org/log"
    old_cp = note.sign_checkpoint(note.Checkpoint(origin, 3, bytes(32)), origin, k1)
    late_cp = note.sign_checkpoint(note.Checkpoint(origin, 4, bytes(32)), origin, k1)
    doc = {
        "receipt": {"public_key_fingerprint": fingerprint(_pub(k1)),
                    "signed_at": "2026-05-01T00:00:00.000001Z"},
        "events": [
            {"event_id": "a", "created_at": "2026-05-02T00:00:00Z",
             "signer": {"public_key_fingerprint": fingerprint(_pub(k1))}},
            {"event_id": "b", "created_at": "2026-07-02T00:00:00Z",
             "signer": {"public_key_fingerprint": fingerprint(_pub(k2))}},
        ],
        "log": {"origin": origin, "checkpoint": old_cp,
                "entries": {"a": {"leaf_index": 1}, "b": {"leaf_index": 3}}},
    }  # fmt: skip
    assert rotation.windowed_checks(doc, windows) == []
    # the old key's event at the takeover position, backdated to before the takeover time:
    # its position decides, not the date its signer wrote
    backdated = {**doc["events"][0], "event_id": "c", "created_at": "2026-01-01T00:00:00Z"}
    entries = {**doc["log"]["entries"], "c": {"leaf_index": 3}}
    problems = rotation.windowed_checks(
        {**doc, "events": [backdated], "log": {**doc["log"], "entries": entries}}, windows
    )
    assert problems[0] == "event c is at log position 3, outside key k1's window"
    # without a position the old key's event is not judged by its date: it fails
    bare = rotation.windowed_checks({**doc, "events": [backdated], "log": None}, windows)
    assert bare and "no log position" in bare[0]
    # the new key's event below the takeover position is not the new key's either
    early = {**doc["log"], "entries": {**doc["log"]["entries"], "b": {"leaf_index": 2}}}
    assert "outside key k2's window" in rotation.windowed_checks({**doc, "log": early}, windows)[0]
    # the receipt: by the position of the record's first event of its key
    logged_late = {**doc["log"], "entries": {"a": {"leaf_index": 5}, "b": {"leaf_index": 6}}}
    receipt_late = rotation.windowed_checks({**doc, "log": logged_late}, windows)
    assert "the receipt was logged at position 5, outside key k1's window" in receipt_late
    late = rotation.windowed_checks({**doc, "log": {**doc["log"], "checkpoint": late_cp}}, windows)
    assert late == ["the log checkpoint is signed by no key valid for its tree size"]


def test_a_window_by_log_position() -> None:
    k1, k2, k3 = _keys(3)
    r1 = rotation.sign_rotation(
        k1, "k1", _pub(k2), "k2", takes_over_at="2026-06-01T00:00:00Z", checkpoints_through=10
    )
    r2 = rotation.sign_rotation(
        k2, "k2", _pub(k3), "k3", takes_over_at="2026-09-01T00:00:00Z", checkpoints_through=25
    )
    w1, w2, w3 = rotation.key_history(_pub(k1), [r1, r2])
    assert [w1.covers_leaf(i) for i in (0, 9, 10)] == [True, True, False]
    assert [w2.covers_leaf(i) for i in (9, 10, 24, 25)] == [False, True, True, False]
    assert w3.covers_leaf(25) and w3.covers_leaf(10**12) and not w3.covers_leaf(24)
    assert w1.retired and w2.retired and not w3.retired
    assert w2.document()["events"] == {"from_leaf_index": 10, "below_leaf_index": 25}
