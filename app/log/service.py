"""Use cases of the transparency log: append events as leaves (inside the transaction that
stores them), sign checkpoints, serve proofs and tiles, take witness cosignatures.

The tree math and the formats are `pith_core`'s (tlog, note, tiles). A checkpoint is a pure
function of (origin, key, size, root) and Ed25519 is deterministic, so checkpoints are signed when
asked, not stored: every worker serving size n serves the same bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nacl.signing import SigningKey
from sqlalchemy.orm import Session

from pith_core import note, tiles, tlog
from pith_core.rotation import KeyWindow
from pith_core.timefmt import format_utc_second

from ..core.problems import Problem
from ..core.timeutil import utcnow
from ..events.repository import EventRepository
from ..registry.service import RegistryIdentity
from ..settings import Settings
from .models import LogCosignature
from .repository import LogRepository

_TREE = "pith.log_tree"  # session.info: (size, root) after this transaction's appends
_LEAVES = "pith.log_leaves"  # session.info: event log_index → leaf index appended in it
_NODES = "pith.log_nodes"  # session.info: the nodes this transaction read or wrote, by id


@dataclass(frozen=True)
class LogSigner:
    """The log's origin line, the key its checkpoints are signed with, and its witnesses."""

    origin: str
    key: SigningKey
    witnesses: tuple[note.Verifier, ...] = ()
    quorum: int = 0

    @classmethod
    def of(cls, settings: Settings, identity: RegistryIdentity) -> LogSigner:
        return cls(
            settings.tlog_origin,
            identity.key.signing_key,
            tuple(note.Verifier.parse(v) for v in settings.log_witnesses),
            settings.log_witness_quorum,
        )

    @property
    def verifier(self) -> note.Verifier:
        return note.Verifier(self.origin, bytes(self.key.verify_key))

    @property
    def vkey(self) -> str:
        return note.verifier_key(self.origin, bytes(self.key.verify_key))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


LOG_APPEND = "pith.log_append"  # session.info: False in bench/log.py's log-less server only


def append(
    session: Session,
    rows: list[dict[str, Any]],
    *,
    retired: Mapping[str, KeyWindow] | None = None,
) -> list[int]:
    """Store verified events (dicts of the Event columns, `body` their canonical JSON) and make
    them the log's next leaves, in one transaction (both or neither); their log indices. The
    one way events enter the store. `retired` (fingerprint → window, RegistryIdentity's
    `retired_windows`): an event of a retired registry key whose leaf would fall outside its
    key's window is refused, whatever date it claims. Caller holds the log lock."""
    if not rows:
        return []
    entries = [row["body"].encode("utf-8") for row in rows]
    _check_entry_sizes(entries)
    EventRepository(session).lock_log()  # held already by every caller; re-entrant: a guard
    repo = LogRepository(session)
    appending = session.info.get(LOG_APPEND) is not False
    size = repo.size() if appending or retired else 0
    if retired:
        for k, row in enumerate(rows):
            window = retired.get(row["signer_fingerprint"])
            if window is not None and not window.covers_leaf(size + k):
                raise Problem(
                    422,
                    "key_retired",
                    f"event {row['event_id']} is signed by registry key {window.key_id}, "
                    f"retired at log position {window.checkpoints_through}: it would be leaf "
                    f"{size + k} (a key's window is judged by log position, not created_at)",
                    field="signer",
                )
    indices = repo.insert_events(rows)
    if appending:
        _append_leaves(session, repo, size, sorted(zip(indices, entries, strict=True)))
    return indices


def refuse_retired_receipt(
    session: Session, retired: Mapping[str, KeyWindow], receipt: Mapping[str, Any]
) -> None:
    """A record whose receipt a retired registry key signed is logged now (its `record` event
    the next leaf): refused (422 `key_retired`) when that position is past the key's window,
    whatever `signed_at` the receipt claims."""
    window = retired.get(str(receipt.get("public_key_fingerprint")))
    if window is None:
        return
    at = LogRepository(session).size()
    if not window.covers_leaf(at):
        raise Problem(
            422,
            "key_retired",
            f"the receipt is signed by registry key {window.key_id}, retired at log position "
            f"{window.checkpoints_through}; the record would be logged at {at}",
            field="receipt",
        )


def _check_entry_sizes(entries: Sequence[bytes]) -> None:
    for entry in entries:
        if len(entry) > tiles.MAX_ENTRY_SIZE:
            raise Problem(
                413,
                "entry_too_large",
                f"the event is {len(entry)} bytes of canonical JSON; a log entry holds at most "
                f"{tiles.MAX_ENTRY_SIZE} (C2SP tlog-tiles entry bundles)",
                field="payload",
            )


def _append_leaves(
    session: Session, repo: LogRepository, size: int, items: Sequence[tuple[int, bytes]]
) -> list[int]:
    """Make the stored events `items` ((log_index, entry), in log-index order) the next leaves
    from `size`; their leaf indices. O(log n) a leaf: reads the tree's frontier, writes the new
    complete nodes. Same transaction as the event rows, under the log lock."""
    entries = [entry for _, entry in items]
    ids = tlog.frontier(size)
    known = repo.nodes(ids)
    nodes, front = tlog.append_leaves(size, [known[i] for i in ids], map(tlog.leaf_hash, entries))
    leaves = [(size + k, log_index) for k, (log_index, _) in enumerate(items)]
    repo.append(leaves, nodes)
    # What this transaction now knows, so its answer needs no query to prove what it appended.
    session.info[_TREE] = (size + len(items), tlog.root_from_frontier(front))
    # what the proofs of the answer need is mostly here: the old frontier and the new nodes
    held = session.info.setdefault(_NODES, {})
    held.update(known)
    held.update(((lv, ix), h) for lv, ix, h in nodes)
    session.info.setdefault(_LEAVES, {}).update((e, i) for i, e in leaves)
    return [i for i, _ in leaves]


def root_at(repo: LogRepository, size: int) -> bytes:
    ids = tlog.frontier(size)
    known = repo.nodes(ids)
    return tlog.root_from_frontier([known[i] for i in ids])


def checkpoint_note(signer: LogSigner, size: int, root: bytes) -> str:
    return note.sign_checkpoint(
        note.Checkpoint(signer.origin, size, root), signer.origin, signer.key
    )


def current_checkpoint(session: Session, signer: LogSigner) -> tuple[int, bytes, str]:
    """(size, root, signed note) of the tree as this transaction sees it."""
    known = session.info.get(_TREE)
    if known is not None:
        size, root = known
    else:
        repo = LogRepository(session)
        size = repo.size()
        root = root_at(repo, size)
    return size, root, checkpoint_note(signer, size, root)


def configured_cosignatures(session: Session, signer: LogSigner, size: int) -> list[LogCosignature]:
    """The stored cosignatures of the checkpoint of `size` by witnesses configured now (name
    and key): a witness taken off the list, or re-keyed, no longer counts nor shows."""
    keys = {(w.name, w.key_hash) for w in signer.witnesses}
    rows = LogRepository(session).cosignatures(size, {name for name, _ in keys})
    out = []
    for row in rows:
        try:
            sig = note.parse_signature_line(row.signature_line)
        except note.NoteError:
            continue
        # a cosignature/v1 is 8 bytes of time then 64 of Ed25519: any other line is no
        # witness's timed word (and its "time" would be read from a signature)
        if (sig.name, sig.key_hash) in keys and len(sig.signature) == 72:
            out.append(row)
    return out


def with_cosignatures(session: Session, signer: LogSigner, text: str, size: int) -> str:
    """The signed checkpoint `text` with the configured witnesses' cosignature lines."""
    lines = [c.signature_line for c in configured_cosignatures(session, signer, size)]
    return text + "".join(line + "\n" for line in lines)


def _line_prefixes(signer: LogSigner) -> list[tuple[str, str]]:
    """Each configured witness's name and the start of its cosignature lines ("— name
    base64(key hash || signature)": the first 5 characters hold 30 bits of the key hash; the
    rest is checked line by line by `configured_cosignatures`)."""
    return [(w.name, f"\u2014 {w.name} {b64(w.key_hash)[:5]}") for w in signer.witnesses]


def witnessed_size(session: Session, signer: LogSigner) -> int | None:
    """The largest tree size a quorum of the configured witnesses cosigned; None before one."""
    if signer.quorum <= 0 or not signer.witnesses:
        return None
    sizes = LogRepository(session).quorum_sizes(
        _line_prefixes(signer), signer.quorum, largest_first=True
    )
    for size in sizes:
        if len(configured_cosignatures(session, signer, size)) >= signer.quorum:
            return size
    return None


def first_witnessed_size_above(
    session: Session, signer: LogSigner, leaf: int, page: int = 16
) -> int | None:
    """The smallest tree size above `leaf` a quorum of the configured witnesses cosigned, or
    None: the earliest witnessed tree holding the leaf, so later checkpoints do not move the
    time it was first attested. Rows of a witness's earlier key are left out in SQL (after a
    re-key there may be any number of them), and sizes are read a page at a time until one
    passes."""
    if signer.quorum <= 0 or not signer.witnesses:
        return None
    sizes = LogRepository(session).quorum_sizes(
        _line_prefixes(signer), signer.quorum, above=leaf, page=page
    )
    for size in sizes:
        if len(configured_cosignatures(session, signer, size)) >= signer.quorum:
            return size
    return None


def published_checkpoint(session: Session, signer: LogSigner) -> str:
    """What `/log/checkpoint` serves: the latest checkpoint, or with a witness quorum set, the
    latest one that quorum of the configured witnesses cosigned (with their cosignatures); 404
    before there is one."""
    repo = LogRepository(session)
    if signer.quorum <= 0:
        size, _, text = current_checkpoint(session, signer)
        return with_cosignatures(session, signer, text, size)
    size = witnessed_size(session, signer)
    if size is None:
        raise Problem(
            404,
            "no_witnessed_checkpoint",
            f"no checkpoint has {signer.quorum} witness cosignatures yet; "
            "the latest unwitnessed one is at /log/checkpoint/unwitnessed",
        )
    text = checkpoint_note(signer, size, root_at(repo, size))
    return with_cosignatures(session, signer, text, size)


def inclusion_proofs(
    repo: LogRepository,
    leaf_indices: Iterable[int],
    size: int,
    held: Mapping[tlog.NodeId, bytes] | None = None,
) -> dict[int, list[str]]:
    """Base64 RFC 6962 audit paths of the leaves, against the tree of `size`: the nodes not
    `held` already (this transaction's appends) in one query."""
    # neighbouring leaves share most of their paths: each distinct range is folded once
    ranges, paths = tlog.inclusion_paths(leaf_indices, size)
    compact = [tlog.range_nodes(*r) for r in ranges]
    held = held or {}
    missing = {n for nodes in compact for n in nodes if n not in held}
    known = {**repo.nodes(missing), **held} if missing else held
    # most ranges are one stored node (a perfect subtree): no fold
    folded = [
        b64(known[nodes[0]] if len(nodes) == 1 else tlog.fold_range([known[n] for n in nodes]))
        for nodes in compact
    ]
    return {i: [folded[k] for k in path] for i, path in paths.items()}


def consistency_proof(session: Session, size1: int, size2: int) -> list[str]:
    repo = LogRepository(session)
    size = repo.size()
    if not 0 < size1 <= size2 <= size:
        raise Problem(
            400,
            "bad_tree_sizes",
            f"a consistency proof needs 0 < from <= to <= {size} (the tree size)",
            field="from" if not 0 < size1 <= size2 else "to",
        )
    if size1 == size2:
        return []
    ranges = tlog.consistency_ranges(size1, size2)
    known = repo.nodes(tlog.proof_nodes(ranges))
    return [b64(h) for h in tlog.build_proof(ranges, known.__getitem__)]


def proofs_for_events(
    session: Session,
    signer: LogSigner,
    event_log_indices: Sequence[int],
    *,
    with_proofs: bool = True,
) -> dict[str, Any]:
    """The `log` object of a response: the checkpoint and, per event log index, its leaf index
    and (unless `with_proofs` is False) its inclusion proof against that checkpoint; the nodes
    of what this transaction appended come from memory, not the database."""
    repo = LogRepository(session)
    size, _, checkpoint = current_checkpoint(session, signer)
    appended: dict[int, int] = session.info.get(_LEAVES, {})
    missing = [e for e in event_log_indices if e not in appended]  # duplicates: stored before
    found = {**repo.leaf_indices(missing), **appended} if missing else appended
    leaves = {e: i for e, i in found.items() if i < size}
    held = session.info.get(_NODES)
    proofs = inclusion_proofs(repo, leaves.values(), size, held) if with_proofs else {}
    entries: dict[str, Any] = {}
    for log_index in event_log_indices:
        if log_index in leaves:
            entry: dict[str, Any] = {"leaf_index": leaves[log_index]}
            if with_proofs:
                entry["inclusion_proof"] = proofs[leaves[log_index]]
            entries[str(log_index)] = entry
    return {
        "origin": signer.origin,
        "tree_size": size,
        "checkpoint": checkpoint,
        "entries": entries,
    }


def event_log_object(proofs: Mapping[str, Any], log_index: int) -> dict[str, Any] | None:
    """One event's `log`: its leaf index, inclusion proof and the checkpoint it proves against."""
    entry = proofs["entries"].get(str(log_index))
    if entry is None:
        return None
    return {
        "leaf_index": entry["leaf_index"],
        "tree_size": proofs["tree_size"],
        "inclusion_proof": entry["inclusion_proof"],
        "checkpoint": proofs["checkpoint"],
    }


def tile_body(session: Session, requested: tiles.Tile) -> tuple[bytes, bool] | None:
    """The bytes of a hash tile or entry bundle and whether it is full (immutable); None when
    the tree has no such tile."""
    repo = LogRepository(session)
    tile = tiles.tile_for(requested, repo.size())
    if tile is None:
        return None
    if tile.level == tiles.ENTRIES:
        begin, end = tile.leaf_range()
        try:
            data = tiles.encode_entry_bundle(
                [body.encode("utf-8") for _, body in repo.entries(begin, end)]
            )
        except tiles.TileError as e:  # only an event stored before the log (migration 0004)
            raise Problem(409, "entry_too_large", f"{tile.path()}: {e}") from e
        return data, tile.is_full
    ids = tile.node_ids()
    hashes = repo.level_slice(ids[0][0], ids[0][1], ids[-1][1] + 1)
    return b"".join(hashes), tile.is_full


def add_cosignature(session: Session, signer: LogSigner, body: str) -> dict[str, Any]:
    """Take a checkpoint a configured witness cosigned (the note, with at least the witness's
    line); keep each valid cosignature of a configured witness on a checkpoint of this log."""
    try:
        parsed = note.parse_note(body)
        checkpoint = note.parse_checkpoint(parsed.text)
    except note.NoteError as e:
        raise Problem(400, "bad_note", str(e)) from e
    if checkpoint.origin != signer.origin:
        raise Problem(422, "wrong_origin", f"this log's origin is {signer.origin!r}")
    repo = LogRepository(session)
    size = repo.size()
    if not 0 < checkpoint.size <= size or root_at(repo, checkpoint.size) != checkpoint.root:
        raise Problem(
            409,
            "not_this_tree",
            f"this log never had root {b64(checkpoint.root)} at size {checkpoint.size}",
        )
    kept: list[str] = []
    now = utcnow()
    for sig in parsed.signatures:
        for w in signer.witnesses:
            if sig.name == w.name and note.signature_verifies(parsed, sig, w):
                repo.add_cosignature(checkpoint.size, w.name, checkpoint.root, sig.line()[:-1], now)
                kept.append(w.name)
    if not kept:
        raise Problem(
            403, "unknown_witness", "no valid cosignature of a witness this log is configured with"
        )
    have = len(configured_cosignatures(session, signer, checkpoint.size))
    return {
        "tree_size": checkpoint.size,
        "accepted": kept,
        "cosignatures": have,
        "quorum": signer.quorum,
    }


def witnessed_inclusion(
    session: Session, signer: LogSigner, subject: str, registry_fingerprints: Collection[str]
) -> dict[str, Any] | None:
    """The evidence that `subject`'s record was in this log at a checkpoint a quorum of the
    configured witnesses cosigned (its `record` event a leaf below that tree size), or None:
    the witnesses, not this registry, attest the tree existed by their cosignatures' times."""
    if signer.quorum <= 0 or not signer.witnesses:
        return None
    found = LogRepository(session).record_leaf(subject, registry_fingerprints)
    if found is None:
        return None
    event_id, leaf = found
    size = first_witnessed_size_above(session, signer, leaf)
    if size is None:
        return None
    cosigned = []
    for row in configured_cosignatures(session, signer, size):
        sig = note.parse_signature_line(row.signature_line)
        at = datetime.fromtimestamp(note.cosignature_time(sig), UTC)
        cosigned.append({"witness": sig.name, "at": format_utc_second(at)})
    # the quorum's word: by this time at least `quorum` witnesses had cosigned the tree
    earliest = sorted(c["at"] for c in cosigned)[signer.quorum - 1]
    names = ", ".join(c["witness"] for c in cosigned)
    return {
        "event_id": event_id,
        "created_at": earliest,
        "method": "witnessed_log",
        "label": "witnessed log",
        "leaf_index": leaf,
        "tree_size": size,
        "cosignatures": cosigned,
        "how": f"the record is leaf {leaf} of this registry's log, under checkpoint {size} "
        f"cosigned by {len(cosigned)} witness(es) ({names}) from {earliest}",
    }


def outside_key_windows(
    session: Session, subject: str, retired: Mapping[str, KeyWindow]
) -> set[str]:
    """Ids of `subject`'s events signed by a retired registry key at a log position outside its
    window (stored before the rotation was configured, say): not the registry's word."""
    if not retired:
        return set()
    rows = LogRepository(session).signed_by(subject, retired)
    return {eid for eid, fp, leaf in rows if not retired[fp].covers_leaf(leaf)}
