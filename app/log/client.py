"""Clients of a registry's log over HTTP: `fsck` re-derives every tile and the root from the
entries and checks the signed checkpoint; a witness follows checkpoints, checks each extends the
last it saw and cosigns it, and prints split-view evidence when one does not."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from pith_core import note, tiles, tlog
from pith_core.logcheck import (
    LogCheckError,
    check_consistency,
    open_signed_checkpoint,
    split_view_evidence,
)


class LogClientError(Exception):
    """The log served something that does not hold (the message says what)."""


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


def fetch_checkpoint(
    client: httpx.Client, keys: list[bytes], *, unwitnessed: bool = True
) -> tuple[note.Checkpoint, str]:
    """The log's latest checkpoint (the one witnesses follow, by default), signature checked.
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
        checkpoint, _ = open_signed_checkpoint(raw, origin, keys)
    except LogCheckError as e:
        raise LogClientError(str(e)) from e
    return checkpoint, raw


def fsck(client: httpx.Client, keys: list[bytes]) -> FsckReport:
    """Fetch every entry bundle and hash tile of the checkpoint's tree; recompute them."""
    checkpoint, _ = fetch_checkpoint(client, keys)
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
) -> dict[str, Any]:
    """One witness round: fetch, check against the last checkpoint seen, cosign, submit, save.
    Raises SplitView (with the evidence) when the new checkpoint does not extend the old."""
    checkpoint, raw = fetch_checkpoint(client, log_keys)
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
