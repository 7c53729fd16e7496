"""A static mirror of a registry: `pith mirror pull URL --dir DIR` follows the registry's log,
checks the new checkpoint extends the one it holds, fetches the new entries, verifies every
event's signature and that the entries hash to the signed root, then writes the log (tiles,
entry bundles, checkpoint) and each touched record's bundle and merged state under DIR, at the
registry's own paths, so any static web server serves the copy at the same URLs.

Everything written is a function of the verified log and the records' receipts, so two mirrors
of one registry hold byte-identical files once they have pulled the same checkpoint.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from pith_core import note, tiles, tlog
from pith_core.bundle import build_bundle
from pith_core.canonical import canonical_json
from pith_core.errors import EventError, PithError
from pith_core.events import verify_event
from pith_core.keys import fingerprint
from pith_core.logcheck import LogCheckError, check_consistency, split_view_evidence
from pith_core.merge import merge
from pith_core.number import pith_number
from pith_core.rotation import KeyWindow
from pith_core.verify import verify_document

from .client import (
    LogClientError,
    OutsideKeyWindow,
    SplitView,
    _get,
    fetch_checkpoint,
    key_document,
    rotation_windows,
    trusted_keys,
)


def _suffix(subject: str) -> str:
    """The 26-character suffix a record's URLs use."""
    return subject.rsplit(":", 1)[1]


def _write(path: Path, data: bytes) -> None:
    """Write whole or not at all (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _local_entries(root: Path, size: int) -> list[bytes]:
    out: list[bytes] = []
    for tile in tiles.tiles_of(size):
        if tile.level == tiles.ENTRIES:
            out += tiles.decode_entry_bundle((root / "log" / tile.path()).read_bytes())
    return out


def _fetch_entries(client: httpx.Client, begin: int, size: int) -> list[bytes]:
    """Entries [begin, size) from the registry's entry bundles (whole bundles, then sliced)."""
    out: list[bytes] = []
    first = begin // tiles.TILE_WIDTH * tiles.TILE_WIDTH
    for tile in tiles.tiles_of(size):
        if tile.level != tiles.ENTRIES or tile.leaf_range()[1] <= begin:
            continue
        got = tiles.decode_entry_bundle(_get(client, f"/log/{tile.path()}").content)
        if len(got) != tile.width:
            raise LogClientError(f"{tile.path()} holds {len(got)} entries, not {tile.width}")
        out += got
    return out[begin - first :]


def _verify_entries(entries: Iterable[bytes], pins: frozenset[str]) -> list[dict[str, Any]]:
    events = []
    for n, entry in enumerate(entries):
        try:
            event = json.loads(entry)
            verify_event(event, pins)
        except (ValueError, EventError) as e:
            raise LogClientError(f"entry {n} is not a valid signed event: {e}") from e
        if canonical_json(event) != entry:
            raise LogClientError(f"entry {n} is not the event's canonical JSON")
        events.append(event)
    return events


def witness_policy(client: httpx.Client) -> tuple[list[note.Verifier], int]:
    """The witnesses and quorum the registry says its checkpoints need (its key document's
    `transparency_log`); none from a static copy, which serves no such document."""
    entry = key_document(client).get("transparency_log")
    if not isinstance(entry, dict):
        return [], 0
    try:
        witnesses = [note.Verifier.parse(v) for v in entry.get("witnesses") or ()]
    except note.NoteError as e:
        raise LogClientError(f"the registry names a malformed witness key: {e}") from e
    return witnesses, int(entry.get("witness_quorum") or 0)


def _checkpoint_to_publish(
    client: httpx.Client,
    keys: list[bytes],
    witnesses: list[note.Verifier],
    quorum: int,
    windows: list[KeyWindow],
) -> tuple[note.Checkpoint, str]:
    """The checkpoint this pull may publish: signed by a key whose rotation window holds its
    tree size, and with a quorum, only the registry's witnessed one, carrying `quorum` valid
    cosignatures of `witnesses` (never the unwitnessed one)."""
    if quorum <= 0:
        try:
            return fetch_checkpoint(client, keys, unwitnessed=False, windows=windows)
        except OutsideKeyWindow:
            raise  # a key signed past its window: no way round that
        except LogClientError:
            return fetch_checkpoint(client, keys, unwitnessed=True, windows=windows)
    checkpoint, raw = fetch_checkpoint(client, keys, unwitnessed=False, windows=windows)
    cosigners = note.count_cosigners(note.parse_note(raw), witnesses)
    if len(cosigners) < quorum:
        raise LogClientError(
            f"the checkpoint of size {checkpoint.size} has {len(cosigners)} of the {quorum} "
            "witness cosignatures required; nothing published"
        )
    return checkpoint, raw


def pull(
    client: httpx.Client,
    root: Path,
    keys: list[bytes],
    witnesses: list[note.Verifier] | None = None,
    quorum: int | None = None,
    rotations: list[Any] | None = None,
) -> dict[str, Any]:
    """One pull; raises SplitView when the registry's log does not extend the mirror's copy,
    LogClientError when what it serves does not verify (a checkpoint signed by a retired or
    revoked key past its window included). Nothing is written unless all holds.
    Witnesses and quorum default to what the registry requires of its own checkpoints, the key
    rotations to those it publishes (chained from the pinned `keys`)."""
    if witnesses is None or quorum is None:
        asked_witnesses, asked_quorum = witness_policy(client)
        witnesses = asked_witnesses if witnesses is None else witnesses
        quorum = asked_quorum if quorum is None else quorum
    windows = rotation_windows(client, keys, rotations)
    keys = trusted_keys(keys, windows)
    checkpoint, raw = _checkpoint_to_publish(client, keys, witnesses, quorum, windows)
    held_path = root / "log" / "checkpoint"
    held_size = 0
    if held_path.exists():
        held_raw = held_path.read_text()
        held = note.parse_checkpoint(note.parse_note(held_raw).text)
        held_size = held.size
        proof: list[str] = []
        small, big = sorted((held.size, checkpoint.size))
        if 0 < small < big:  # nothing to prove from the empty tree or between equals
            proof = _get(client, f"/log/proof/consistency?from={small}&to={big}").json()["proof"]
        try:
            check_consistency(held_raw, raw, proof, checkpoint.origin, keys)
        except LogCheckError as e:
            raise SplitView(split_view_evidence(held_raw, raw, proof, str(e))) from e
        if checkpoint.size <= held.size:
            return {"tree_size": held.size, "new_entries": 0, "root": held_raw.split("\n")[2]}
    old = _local_entries(root, held_size)
    new = _fetch_entries(client, held_size, checkpoint.size)
    pins = frozenset(fingerprint(k) for k in keys)
    new_events = _verify_entries(new, pins)
    entries = old + new
    nodes, front = tlog.append_leaves(0, [], [tlog.leaf_hash(e) for e in entries])
    if len(entries) != checkpoint.size or tlog.root_from_frontier(front) != checkpoint.root:
        raise LogClientError("the registry's entries do not hash to its signed root")
    store = {(level, idx): h for level, idx, h in nodes}
    all_events = [*(json.loads(e) for e in old), *new_events]
    # every record's bundle proves against the newest checkpoint, so copies converge; the
    # events are grouped by subject in one pass (one scan of the log, not one per record)
    by_subject: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for leaf, event in enumerate(all_events):
        by_subject.setdefault(event["subject_pith_number"], []).append((leaf, event))
    subjects = sorted(by_subject)
    records = {s: _held_record(root, s) or _verified_record(client, s, keys) for s in subjects}
    _write_log(root, entries, store, checkpoint.size)
    for subject in subjects:
        _write_record(root, subject, records[subject], by_subject[subject], keys, store,
                      checkpoint, raw)  # fmt: skip
    _write(held_path, raw.encode())
    return {
        "tree_size": checkpoint.size,
        "new_entries": len(new),
        "root": raw.split("\n")[2],
        "records": len(subjects),
    }


def _held_record(root: Path, subject: str) -> dict[str, Any] | None:
    """The record and receipt this mirror verified on an earlier pull."""
    path = root / "pith" / _suffix(subject) / "bundle.json"
    if not path.exists():
        return None
    bundle = json.loads(path.read_bytes())
    return {"canonical_record": bundle["canonical_record"], "receipt": bundle["receipt"]}


def _verified_record(client: httpx.Client, subject: str, keys: list[bytes]) -> dict[str, Any]:
    """The record and receipt of `subject`, from the registry's bundle, checked offline."""
    bundle = _get(client, f"/pith/{_suffix(subject)}/bundle.json").json()
    _, checks = verify_document(bundle, keys)
    failed = [c for c in checks if not c.passed and c.name in ("receipt", "canonical_sha256")]
    if failed:
        raise LogClientError(f"the bundle of {subject} does not verify: {failed[0].detail}")
    try:  # a genuine bundle of another paper, served at this one's URL, is not this paper's
        named = pith_number(bundle["canonical_record"])
    except (PithError, KeyError, TypeError, ValueError) as e:
        raise LogClientError(f"the bundle of {subject} holds no canonical record: {e}") from e
    if named != subject:
        raise LogClientError(f"the bundle served for {subject} is the record of {named}")
    return {"canonical_record": bundle["canonical_record"], "receipt": bundle["receipt"]}


def _write_log(root: Path, entries: list[bytes], store: dict, size: int) -> None:
    for tile in tiles.tiles_of(size):
        path = root / "log" / tile.path()
        if tile.is_full and path.exists():
            continue  # full tiles never change
        if tile.level == tiles.ENTRIES:
            begin, end = tile.leaf_range()
            data = tiles.encode_entry_bundle(entries[begin:end])
        else:
            data = tiles.tile_bytes(tile, store.__getitem__)
        _write(path, data)
        # a tile of this index at another width is stale now: keep one copy of each tile
        base = root / "log" / tiles.Tile(tile.level, tile.index).path()
        partials = base.parent / (base.name + ".p")
        for old in partials.glob("*") if partials.exists() else ():
            if old != path:
                old.unlink()
        if tile.is_full and partials.exists() and not any(partials.iterdir()):
            partials.rmdir()


def _write_record(
    root: Path,
    subject: str,
    record: dict[str, Any],
    mine: list[tuple[int, dict[str, Any]]],
    keys: list[bytes],
    store: dict,
    checkpoint: note.Checkpoint,
    raw: str,
) -> None:
    """The bundle and state of `subject` from its events `mine` ((leaf index, event))."""
    events = [e for _, e in mine]
    try:
        state = merge(events, keys, subject=subject)
    except PithError as e:
        raise LogClientError(f"the events of {subject} do not merge: {e}") from e
    bundle = build_bundle(
        record["canonical_record"],
        record["receipt"],
        events,
        source_aliases=state["current"]["source_aliases"],
        state_sha256=state["state_sha256"],
    )
    bundle["log"] = {
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "checkpoint": raw,
        "entries": {
            e["event_id"]: {
                "leaf_index": i,
                "inclusion_proof": [
                    base64.b64encode(h).decode()
                    for h in tlog.build_proof(
                        tlog.inclusion_ranges(i, checkpoint.size), store.__getitem__
                    )
                ],
            }
            for i, e in mine
        },
    }
    suffix = _suffix(subject)
    _write(root / "pith" / suffix / "bundle.json", canonical_json(bundle))
    _write(root / "pith" / suffix / "state.json", canonical_json(state))
