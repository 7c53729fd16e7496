"""Registry key rotation: a statement signed by the old key naming the new key and when it takes
over, and the key history (each key with its validity window) a chain of them gives.

What a window means is judged by log position, never by a date the signer wrote (a stolen key
backdates at will): the old key's events are the leaves below the tree size its last checkpoint
covers (`checkpoints_through`), the new key's those from there on, and a checkpoint verifies
under the key whose range holds its tree size. A rotation that revokes a key believed compromised
names the last tree size known good as `checkpoints_through`, so everything the key signed later
is void while what it signed before still stands. Dates (`takes_over_at`, `revoked_since`) judge
only what has no log position: a receipt of a record the log does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .canonical import canonical_json
from .errors import PithError
from .keys import b64decode_strict, b64encode, fingerprint, public_key_from_hex
from .timefmt import is_utc_second

ROTATION_KIND = "pith_key_rotation"
ROTATION_DOMAIN = b"pith-key-rotation-v1\n"
_FIELDS = {
    "kind",
    "version",
    "old_public_key_hex",
    "old_key_id",
    "new_public_key_hex",
    "new_key_id",
    "takes_over_at",
    "checkpoints_through",
    "revoked_since",
    "signature_b64",
}


_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z")


def _instant(text: Any) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (string order is time order), from that or a receipt's
    microsecond form; ValueError otherwise."""
    second = text
    if isinstance(text, str) and _MICROS.fullmatch(text):
        second = text[:19] + "Z"
    if not is_utc_second(second):
        raise ValueError(f"{text!r} is not a UTC time YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    return str(second)


class RotationError(PithError):
    """A rotation statement that is malformed, not signed by the key it retires, or out of
    order."""


def _message(statement: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in statement.items() if k != "signature_b64"}
    return ROTATION_DOMAIN + canonical_json(body)


def sign_rotation(
    old: SigningKey,
    old_key_id: str,
    new_public_key: bytes,
    new_key_id: str,
    *,
    takes_over_at: str,
    checkpoints_through: int,
    revoked_since: str | None = None,
) -> dict[str, Any]:
    """The statement, signed by the old key, that `new_public_key` takes over at
    `takes_over_at` (and signs the log's checkpoints above tree size `checkpoints_through`)."""
    _instant(takes_over_at)
    if revoked_since is not None:
        _instant(revoked_since)
    statement: dict[str, Any] = {
        "kind": ROTATION_KIND,
        "version": 1,
        "old_public_key_hex": bytes(old.verify_key).hex(),
        "old_key_id": old_key_id,
        "new_public_key_hex": new_public_key.hex(),
        "new_key_id": new_key_id,
        "takes_over_at": takes_over_at,
        "checkpoints_through": checkpoints_through,
        "revoked_since": revoked_since,
    }
    statement["signature_b64"] = b64encode(old.sign(_message(statement)).signature)
    return statement


def verify_rotation(statement: Any) -> dict[str, Any]:
    """`statement` if well formed and signed by the old key it names; RotationError if not."""
    if not isinstance(statement, dict) or set(statement) != _FIELDS:
        raise RotationError(f"a rotation statement has exactly the fields {sorted(_FIELDS)}")
    if statement["kind"] != ROTATION_KIND or statement["version"] != 1:
        raise RotationError("not a version 1 pith_key_rotation")
    try:
        old = public_key_from_hex(statement["old_public_key_hex"])
        public_key_from_hex(statement["new_public_key_hex"])
        _instant(statement["takes_over_at"])
        if statement["revoked_since"] is not None:
            _instant(statement["revoked_since"])
        signature = b64decode_strict(statement["signature_b64"], "signature_b64")
    except (PithError, ValueError, TypeError) as e:
        raise RotationError(f"malformed rotation statement: {e}") from e
    n = statement["checkpoints_through"]
    if type(n) is not int or n < 0:
        raise RotationError("checkpoints_through is a tree size (an integer >= 0)")
    if old == bytes.fromhex(statement["new_public_key_hex"]):
        raise RotationError("a rotation names a new key")
    try:
        VerifyKey(old).verify(_message(statement), signature)
    except (BadSignatureError, ValueError) as e:
        raise RotationError("the rotation is not signed by the key it retires") from e
    return statement


@dataclass(frozen=True)
class KeyWindow:
    public_key: bytes
    key_id: str
    valid_from: str | None  # None: since the registry began
    valid_until: str | None  # None: still current
    checkpoints_after: int  # checkpoints of a tree at least this large …
    checkpoints_through: int | None  # … and no larger than this (None: no limit)
    revoked: bool = False

    def covers_time(self, when: str) -> bool:
        """Whether a signature dated `when` (YYYY-MM-DDTHH:MM:SS…Z) is in this window."""
        moment = _instant(when)
        if self.valid_from is not None and moment < _instant(self.valid_from):
            return False
        return self.valid_until is None or moment < _instant(self.valid_until)

    @property
    def retired(self) -> bool:
        return self.checkpoints_through is not None

    def covers_leaf(self, index: int) -> bool:
        """Whether an event at log position `index` (its leaf index) is this key's: the leaves
        below the tree size the rotation hands over at are the old key's, the rest the new's."""
        if index < self.checkpoints_after:
            return False
        return self.checkpoints_through is None or index < self.checkpoints_through

    def covers_tree_size(self, size: int) -> bool:
        """A checkpoint of `size` leaves: the new key takes over at the size the rotation names
        (it may re-sign that tree), the old key signs nothing larger."""
        if size < self.checkpoints_after:
            return False
        return self.checkpoints_through is None or size <= self.checkpoints_through

    def document(self) -> dict[str, Any]:
        return {
            "public_key_hex": self.public_key.hex(),
            "fingerprint_sha256_hex": fingerprint(self.public_key),
            "key_id": self.key_id,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "checkpoints": {"after_tree_size": self.checkpoints_after,
                            "through_tree_size": self.checkpoints_through},
            "events": {"from_leaf_index": self.checkpoints_after,
                       "below_leaf_index": self.checkpoints_through},
            "revoked": self.revoked,
        }  # fmt: skip


def key_history(first_key: bytes, rotations: Sequence[Mapping[str, Any]]) -> list[KeyWindow]:
    """Each key of the registry, oldest first, with its window: the chain of `rotations` must
    start at `first_key` (the key a client pinned), each signed by the key then current, in
    time order. Rotations before the pinned key are skipped."""
    rotations = list(rotations)
    while rotations and rotations[0].get("old_public_key_hex") != first_key.hex():
        rotations.pop(0)
    windows: list[KeyWindow] = []
    first_id = str(rotations[0]["old_key_id"]) if rotations else ""
    current, current_id, since, after = first_key, first_id, None, 0
    for raw in rotations:
        statement = verify_rotation(dict(raw))
        if bytes.fromhex(statement["old_public_key_hex"]) != current:
            raise RotationError(
                f"the rotation to {statement['new_public_key_hex'][:16]}… retires "
                f"{statement['old_public_key_hex'][:16]}…, not the key then current"
            )
        takes_over = statement["takes_over_at"]
        if since is not None and _instant(takes_over) <= _instant(since):
            raise RotationError("rotations are in time order")
        if statement["checkpoints_through"] < after:
            raise RotationError("a rotation's checkpoints_through never goes back")
        revoked = statement["revoked_since"]
        until = takes_over
        if revoked is not None and _instant(revoked) < _instant(takes_over):
            until = revoked
        windows.append(
            KeyWindow(
                current,
                current_id,
                since,
                until,
                after,
                statement["checkpoints_through"],
                revoked is not None,
            )
        )
        current = bytes.fromhex(statement["new_public_key_hex"])
        current_id = statement["new_key_id"]
        since, after = takes_over, statement["checkpoints_through"]
    windows.append(KeyWindow(current, current_id, since, None, after, None))
    return windows


def pinned_windows(pinned: Sequence[bytes], statements: Sequence[Any]) -> list[KeyWindow]:
    """The windows a client judges a log's checkpoints by: the key history the signed
    `statements` give from the first of its `pinned` keys they retire (so a rotation it can
    check extends its trust to the new key, and a retired or revoked key signs nothing past
    its window), and every other pinned key as it pinned it, without a window.
    RotationError when the statements do not chain."""
    pinned_hex = {k.hex() for k in pinned}
    start = next(
        (
            bytes.fromhex(s["old_public_key_hex"])
            for s in statements
            if isinstance(s, Mapping) and s.get("old_public_key_hex") in pinned_hex
        ),
        None,
    )
    windows = key_history(start, statements) if start is not None else []
    held = {w.public_key for w in windows}
    windows += [
        KeyWindow(k, "", None, None, 0, None) for k in dict.fromkeys(pinned) if k not in held
    ]
    return windows


def window_of(windows: Sequence[KeyWindow], public_key: bytes) -> KeyWindow | None:
    for w in windows:
        if w.public_key == public_key:
            return w
    return None


def valid_at(windows: Sequence[KeyWindow], public_key: bytes, when: str) -> bool:
    """Whether a signature by `public_key` dated `when` stands under this key history."""
    w = window_of(windows, public_key)
    return w is not None and w.covers_time(when)


def valid_for_checkpoint(windows: Sequence[KeyWindow], public_key: bytes, size: int) -> bool:
    w = window_of(windows, public_key)
    return w is not None and w.covers_tree_size(size)


def _positions(log: Any) -> dict[str, int]:
    """event id → leaf index, from a bundle's or events.json's `log` object (its inclusion
    proofs are checked by `verify_document`: a position that is not proven fails there)."""
    entries = log.get("entries") if isinstance(log, Mapping) else None
    if not isinstance(entries, Mapping):
        return {}
    return {
        str(eid): entry["leaf_index"]
        for eid, entry in entries.items()
        if isinstance(entry, Mapping) and type(entry.get("leaf_index")) is int
    }


def windowed_checks(doc: Mapping[str, Any], windows: Sequence[KeyWindow]) -> list[str]:
    """What in a record, bundle or state a key signed outside its window (empty: all holds):
    the registry keys' events by their log position (an event of a retired key without one is
    not judged by the date it claims: it fails), a bundle's log checkpoint by its tree size, and
    the receipt by its log position (the leaf of the registry's first event about the record,
    signed with the receipt in one transaction) or, for a record the log does not hold, its
    `signed_at`."""
    from .logcheck import checkpoint_signer

    problems: list[str] = []
    by_fp = {fingerprint(w.public_key): w for w in windows}
    log = doc.get("log")
    positions = _positions(log)
    events = [e for e in doc.get("events") or () if isinstance(e, Mapping)]
    for event in events:
        signer = event.get("signer")
        w = by_fp.get(signer.get("public_key_fingerprint") if isinstance(signer, Mapping) else None)
        if w is None:
            continue
        at = positions.get(str(event.get("event_id")))
        if at is None and w.retired:
            problems.append(
                f"event {event.get('event_id')} of retired key {w.key_id} has no log position "
                "to judge it by (its created_at proves nothing)"
            )
        elif at is not None and not w.covers_leaf(at):
            problems.append(
                f"event {event.get('event_id')} is at log position {at}, outside key "
                f"{w.key_id}'s window"
            )
    receipt = doc.get("receipt")
    if isinstance(receipt, Mapping):
        w = by_fp.get(str(receipt.get("public_key_fingerprint")))
        mine = [
            positions[str(e.get("event_id"))]
            for e in events
            if str(e.get("event_id")) in positions
            and isinstance(e.get("signer"), Mapping)
            and e["signer"].get("public_key_fingerprint") == receipt.get("public_key_fingerprint")
        ]
        if w is not None and mine and not w.covers_leaf(min(mine)):
            problems.append(
                f"the receipt was logged at position {min(mine)}, outside key {w.key_id}'s window"
            )
        elif w is not None and not mine and not w.covers_time(str(receipt.get("signed_at"))):
            problems.append(f"the receipt is dated outside the window of key {w.key_id}")
    if isinstance(log, Mapping) and isinstance(log.get("checkpoint"), str):
        signer = checkpoint_signer(log["checkpoint"], str(log.get("origin")), windows)
        if signer is None:
            problems.append("the log checkpoint is signed by no key valid for its tree size")
    return problems
