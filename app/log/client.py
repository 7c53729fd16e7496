"""Clients of a registry's log over HTTP: `fsck` re-derives every tile and the root from the
entries and checks the signed checkpoint; a witness follows checkpoints, checks each extends the
last it saw and cosigns it, and prints split-view evidence when one does not."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from pith_core import note, tiles, tlog
from pith_core.errors import PithError
from pith_core.logcheck import (
    LogCheckError,
    check_consistency,
    checkpoint_signer,
    open_signed_checkpoint,
    split_view_evidence,
)
from pith_core.rotation import KeyWindow, pinned_windows


class LogClientError(Exception):
    """The log served something that does not hold (the message says what)."""


class OutsideKeyWindow(LogClientError):
    """A checkpoint signed by a registry key past its rotation window (retired or revoked)."""


@dataclass
class FsckReport:
    origin: str
    tree_size: int
    root_b64: str
    tiles_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _get(client: httpx.Client, path: str) -> httpx.Response:
    r = client.get(path)
    if r.status_code != 200:
        raise LogClientError(f"GET {path}: HTTP {r.status_code}")
    return r


def registry_key(client: httpx.Client) -> bytes:
    return bytes.fromhex(_get(client, "/pith-signing-key.json").json()["public_key_hex"])


def key_document(client: httpx.Client) -> dict[str, Any]:
    """The registry's `/pith-signing-key.json` (empty from a static copy, which serves none)."""
    r = client.get("/pith-signing-key.json")
    try:
        doc = r.json() if r.status_code == 200 else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def rotation_windows(
    client: httpx.Client, keys: list[bytes], statements: Sequence[Any] | None = None
) -> list[KeyWindow]:
    """The windows checkpoints are judged by: the rotations (`statements`, by default those the
    registry publishes in its key document) chained from the pinned `keys`. A registry can only
    publish rotations its pinned key signed, so it cannot widen what the client trusts past
    them; a client that learned of a revocation elsewhere passes it as `statements`."""
    if statements is None:
        statements = key_document(client).get("rotations") or []
    if not isinstance(statements, list):
        raise LogClientError("the registry's `rotations` is not a list of rotation statements")
    try:
        return pinned_windows(keys, statements)
    except (PithError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise LogClientError(f"the key rotations do not chain from the pinned key: {e}") from e


def refuse_outside_window(raw: str, checkpoint: note.Checkpoint, windows: list[KeyWindow]) -> None:
    """OutsideKeyWindow unless a key whose window holds the checkpoint's tree size signed it (a
    retired key signs no larger tree than its rotation names; a revoked one none past the last
    size known good)."""
    if checkpoint_signer(raw, checkpoint.origin, windows) is not None:
        return
    signers = []
    for w in windows:
        try:
            open_signed_checkpoint(raw, checkpoint.origin, [w.public_key])
        except LogCheckError:
            continue
        signers.append(w)
    if not signers:
        raise OutsideKeyWindow(f"the checkpoint of tree size {checkpoint.size} is signed by no key "
                             "of the registry's key history")  # fmt: skip
    w = signers[0]
    name = w.key_id or w.public_key.hex()[:16] + "…"
    state = "revoked" if w.revoked else "retired"
    raise OutsideKeyWindow(
        f"the checkpoint of tree size {checkpoint.size} is signed by registry key {name}, "
        f"{state}: it signs only checkpoints of tree sizes {w.checkpoints_after} to "
        f"{w.checkpoints_through}; refused"
    )


def trusted_keys(keys: list[bytes], windows: list[KeyWindow] | None) -> list[bytes]:
    """The pinned keys and the keys their rotations hand over to."""
    extra = [w.public_key for w in windows or () if w.public_key not in keys]
    return [*keys, *extra]


def fetch_checkpoint(
    client: httpx.Client,
    keys: list[bytes],
    *,
    unwitnessed: bool = True,
    windows: list[KeyWindow] | None = None,
) -> tuple[note.Checkpoint, str]:
    """The log's latest checkpoint (the one witnesses follow, by default), signature checked,
    and with `windows` (rotation_windows), signed by a key whose window holds its tree size.
    The origin is the note's first line: the signature binds it (it is the key's name), and a
    static copy of the log (a mirror) serves no `/log` document."""
    path = "/log/checkpoint/unwitnessed" if unwitnessed else "/log/checkpoint"
    r = client.get(path)
    if r.status_code == 404 and unwitnessed:
        r = client.get("/log/checkpoint")  # a static copy holds only the published checkpoint
    if r.status_code != 200:
        raise LogClientError(f"GET {path}: HTTP {r.status_code}")
    raw = r.text
    origin = raw.split("\n", 1)[0]
    try:
        checkpoint, _ = open_signed_checkpoint(raw, origin, trusted_keys(keys, windows))
    except LogCheckError as e:
        raise LogClientError(str(e)) from e
    if windows is not None:
        refuse_outside_window(raw, checkpoint, windows)
    return checkpoint, raw


def fsck(client: httpx.Client, keys: list[bytes]) -> FsckReport:
    """Fetch every entry bundle and hash tile of the checkpoint's tree; recompute them."""
    checkpoint, _ = fetch_checkpoint(client, keys, windows=rotation_windows(client, keys))
    report = FsckReport(
        checkpoint.origin, checkpoint.size, base64.b64encode(checkpoint.root).decode()
    )
    all_tiles = list(tiles.tiles_of(checkpoint.size))
    leaves: list[bytes] = []
    for tile in all_tiles:
        if tile.level == tiles.ENTRIES:
            entries = tiles.decode_entry_bundle(_get(client, f"/log/{tile.path()}").content)
            if len(entries) != tile.width:
                report.problems.append(f"{tile.path()} holds {len(entries)} entries")
            leaves += [tlog.leaf_hash(e) for e in entries]
            report.tiles_checked += 1
    if len(leaves) != checkpoint.size:
        report.problems.append(f"{len(leaves)} entries for a tree of {checkpoint.size}")
        return report
    nodes, front = tlog.append_leaves(0, [], leaves)
    store = {(level, idx): h for level, idx, h in nodes}
    for tile in all_tiles:
        if tile.level == tiles.ENTRIES:
            continue
        served = _get(client, f"/log/{tile.path()}").content
        if served != tiles.tile_bytes(tile, store.__getitem__):
            report.problems.append(f"{tile.path()} differs from the hashes of the entries")
        report.tiles_checked += 1
    if tlog.root_from_frontier(front) != checkpoint.root:
        report.problems.append("the entries do not hash to the checkpoint's root")
    return report


@dataclass
class WitnessState:
    """What a witness last cosigned of one log (kept in a JSON file between runs)."""

    origin: str
    size: int
    checkpoint: str

    @classmethod
    def load(cls, path: Path) -> WitnessState | None:
        if not path.exists():
            return None
        doc = json.loads(path.read_text())
        return cls(doc["origin"], int(doc["size"]), doc["checkpoint"])

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        tmp.replace(path)


class SplitView(LogClientError):
    def __init__(self, evidence: dict[str, Any]) -> None:
        super().__init__(evidence["reason"])
        self.evidence = evidence


def witness_once(
    client: httpx.Client,
    log_keys: list[bytes],
    name: str,
    key: SigningKey,
    state_path: Path,
    timestamp: int,
    rotations: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """One witness round: fetch, check against the last checkpoint seen, cosign, submit, save.
    Raises SplitView (with the evidence) when the new checkpoint does not extend the old, and
    LogClientError when a key signed it outside its rotation window (`rotations`: by default
    the registry's own, chained from `log_keys`)."""
    windows = rotation_windows(client, log_keys, rotations)
    log_keys = trusted_keys(log_keys, windows)
    checkpoint, raw = fetch_checkpoint(client, log_keys, windows=windows)
    last = WitnessState.load(state_path)
    if last is not None:
        proof: list[str] = []
        small, big = sorted((last.size, checkpoint.size))
        if 0 < small < big:  # nothing to prove from the empty tree or between equals
            r = _get(client, f"/log/proof/consistency?from={small}&to={big}")
            proof = r.json()["proof"]
        try:
            check_consistency(last.checkpoint, raw, proof, checkpoint.origin, log_keys)
        except LogCheckError as e:
            raise SplitView(split_view_evidence(last.checkpoint, raw, proof, str(e))) from e
        if checkpoint.size < last.size:  # consistent but older: nothing new to cosign
            return {"cosigned": False, "tree_size": last.size, "reason": "older checkpoint"}
    sig = note.cosign(checkpoint.text(), name, key, timestamp)
    cosigned = note.add_signatures(raw, [sig])
    r = client.post("/log/cosignature", content=cosigned.encode())
    WitnessState(checkpoint.origin, checkpoint.size, raw).save(state_path)
    return {
        "cosigned": r.status_code == 200,
        "tree_size": checkpoint.size,
        "status": r.status_code,
        "response": r.json() if r.headers.get("content-type", "").endswith("json") else r.text,
    }
