"""Offline checks of what a registry's transparency log claims: a bundle's (or events.json's)
inclusion proofs against its signed checkpoint, one checkpoint extending another, and the
self-contained evidence of a split view (two signed checkpoints of one log that cannot both be
true), as Go's checksum-database client prints it.

The log's checkpoint key is the registry's Ed25519 key under the log's origin as key name, so a
client that trusts a registry key trusts its checkpoints without another key to pin.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from .canonical import canonical_json
from .errors import PithError
from .note import Checkpoint, NoteError, Verifier, open_checkpoint
from .tlog import EMPTY_ROOT, ProofError, leaf_hash, verify_consistency, verify_inclusion


class LogCheckError(PithError):
    """A log claim that does not hold."""


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise LogCheckError(f"{what} is not a list of base64 hashes")
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except (binascii.Error, ValueError, TypeError) as e:
        raise LogCheckError(f"{what} holds a value that is not base64") from e


def open_signed_checkpoint(
    raw: str, origin: str, registry_keys: Sequence[bytes]
) -> tuple[Checkpoint, Verifier]:
    """The checkpoint in `raw`, signed by one of `registry_keys` under `origin`."""
    last: Exception | None = None
    for key in registry_keys:
        verifier = Verifier(origin, key)
        try:
            checkpoint, _ = open_checkpoint(raw, verifier, origin)
            return checkpoint, verifier
        except NoteError as e:
            last = e
    raise LogCheckError(f"the checkpoint is not signed by a trusted key as {origin!r}: {last}")


def checkpoint_signer(raw: str, origin: str, windows: Sequence[Any]) -> bytes | None:
    """The key of `windows` (rotation.KeyWindow) that validly signed the checkpoint and was the
    log's key for its tree size; None when no such key did."""
    for w in windows:
        try:
            checkpoint, _ = open_checkpoint(raw, Verifier(origin, w.public_key), origin)
        except NoteError:
            continue
        if w.covers_tree_size(checkpoint.size):
            return bytes(w.public_key)
    return None


def check_events_in_log(
    events: Sequence[Mapping[str, Any]], log: Mapping[str, Any], registry_keys: Sequence[bytes]
) -> str:
    """Every event is a leaf of the tree its signed checkpoint names (the `log` object of a
    bundle or events.json: origin, checkpoint, entries by event id). Raises LogCheckError."""
    if not isinstance(log, Mapping) or not isinstance(log.get("origin"), str):
        raise LogCheckError("the log object names no origin")
    checkpoint, _ = open_signed_checkpoint(str(log.get("checkpoint")), log["origin"], registry_keys)
    entries = log.get("entries")
    if not isinstance(entries, Mapping):
        raise LogCheckError("the log object has no entries")
    for event in events:
        eid = event.get("event_id")
        entry = entries.get(eid)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("leaf_index"), int):
            raise LogCheckError(f"event {eid} has no leaf in the log")
        proof = _hashes(entry.get("inclusion_proof"), f"the inclusion proof of {eid}")
        try:
            verify_inclusion(
                entry["leaf_index"],
                checkpoint.size,
                leaf_hash(canonical_json(dict(event))),
                proof,
                checkpoint.root,
            )
        except ProofError as e:
            raise LogCheckError(f"event {eid} is not in the log it claims: {e}") from e
    return f"{len(events)} events in {checkpoint.origin} at tree size {checkpoint.size}"


def check_consistency(
    old_raw: str,
    new_raw: str,
    proof: Sequence[str],
    origin: str,
    registry_keys: Sequence[bytes],
) -> tuple[Checkpoint, Checkpoint]:
    """Both checkpoints signed, and the newer extends the older by `proof` (base64 hashes)."""
    old, _ = open_signed_checkpoint(old_raw, origin, registry_keys)
    new, _ = open_signed_checkpoint(new_raw, origin, registry_keys)
    if new.size < old.size:
        old, new = new, old
    if old.size == 0:  # every tree extends the empty one (RFC 9162 has no proof for it)
        if old.root != EMPTY_ROOT:
            raise LogCheckError("checkpoint 0 does not carry the empty tree's root")
        return old, new
    if old.size == new.size:  # the same tree: the roots themselves must agree
        if old.root != new.root:
            raise LogCheckError(f"two checkpoints of size {old.size} with different roots")
        return old, new
    try:
        verify_consistency(
            old.size, new.size, _hashes(list(proof), "the proof"), old.root, new.root
        )
    except ProofError as e:
        raise LogCheckError(f"checkpoint {new.size} does not extend {old.size}: {e}") from e
    return old, new


def split_view_evidence(
    old_raw: str, new_raw: str, proof: Sequence[str], reason: str
) -> dict[str, Any]:
    """A self-contained statement of a split view: both signed notes, the proof that fails
    between them, and why; anyone holding the log's key re-checks it offline."""
    return {
        "kind": "pith_log_split_view",
        "reason": reason,
        "checkpoint_a": old_raw,
        "checkpoint_b": new_raw,
        "consistency_proof": list(proof),
        "how_to_check": "both notes verify under the log's key; the RFC 6962 consistency proof "
        "from the smaller tree to the larger does not (or the sizes are equal and the roots "
        "differ): the log showed two histories",
    }


# C2SP tlog-witness: the body of `POST <submission prefix>/add-checkpoint`.
MAX_PROOF_LINES = 63
SIZE_MEDIA_TYPE = "text/x.tlog.size"


def add_checkpoint_body(old_size: int, proof: Sequence[str], checkpoint_note: str) -> bytes:
    """`old <size>`, one base64 consistency-proof hash a line, a blank line, the signed
    checkpoint (C2SP tlog-witness add-checkpoint)."""
    lines = [f"old {old_size}", *proof, ""]
    return ("\n".join(lines) + "\n" + checkpoint_note).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, consistency proof, checkpoint note) of an add-checkpoint request body;
    LogCheckError when it is not one (a 400 for the witness)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LogCheckError("the request body is not UTF-8") from e
    head, sep, checkpoint_note = text.partition("\n\n")
    if not sep:
        raise LogCheckError("no blank line between the old size and proof and the checkpoint")
    lines = head.split("\n")
    old = lines[0].removeprefix("old ")
    if old == lines[0] or not old.isascii() or not old.isdigit() or (old != "0" and old[0] == "0"):
        raise LogCheckError("the first line is `old <size>` (decimal, no leading zeroes)")
    if len(old) > 20:
        raise LogCheckError("the old size is too large")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise LogCheckError(f"at most {MAX_PROOF_LINES} consistency proof lines")
    proof = _hashes(lines[1:], "the consistency proof")
    if any(len(h) != 32 for h in proof):
        raise LogCheckError("each consistency proof line is one base64 SHA-256 hash")
    return int(old), proof, checkpoint_note
