"""`pith log fsck|consistency|witness-key` and `pith witness`: the transparency log's commands of
the `pith` CLI (added by app.cli.register)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _keys(hexes: list[str] | None, client: Any) -> list[bytes]:
    from pith_core.keys import public_key_from_hex

    from .client import registry_key

    if hexes:
        return [public_key_from_hex(k) for k in hexes]
    key = registry_key(client)
    print(
        f"pith log: trusting the key the registry serves ({key.hex()}); pin it with --key",
        file=sys.stderr,
    )
    return [key]


def _rotations(args: argparse.Namespace, command: str) -> list[Any] | None:
    """The rotation statements of --rotations FILE (a key document or a list of statements);
    None without it (then the registry's own). SystemExit(2) when the file is not one."""
    path = getattr(args, "rotations", None)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"{command}: --rotations: {e}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from e
    statements = doc.get("rotations", []) if isinstance(doc, dict) else doc
    if not isinstance(statements, list):
        print(f"{command}: --rotations: not a list of rotation statements", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return statements


def cmd_fsck(args: argparse.Namespace) -> int:
    import httpx

    from .client import LogClientError, fsck

    with httpx.Client(base_url=args.url.rstrip("/"), timeout=60) as client:
        try:
            report = fsck(client, _keys(args.key, client))
        except (LogClientError, httpx.HTTPError) as e:
            print(f"pith log fsck: {e}", file=sys.stderr)
            return EXIT_FAILED
    print(json.dumps({**report.__dict__, "ok": report.ok}, indent=1))
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_consistency(args: argparse.Namespace) -> int:
    """Offline: two signed checkpoints and a proof (JSON list, or {"proof": [...]})."""
    from pith_core.keys import public_key_from_hex
    from pith_core.logcheck import LogCheckError, check_consistency, split_view_evidence

    old, new = args.old.read_text(), args.new.read_text()
    doc = json.loads(args.proof.read_text()) if args.proof else []
    proof = doc["proof"] if isinstance(doc, dict) else doc
    origin = old.split("\n", 1)[0]
    keys = [public_key_from_hex(k) for k in args.key]
    try:
        a, b = check_consistency(old, new, proof, origin, keys)
    except LogCheckError as e:
        print(json.dumps(split_view_evidence(old, new, proof, str(e)), indent=1))
        return EXIT_FAILED
    print(f"consistent: {origin} size {a.size} is a prefix of size {b.size}")
    return EXIT_OK


def cmd_witness_key(args: argparse.Namespace) -> int:
    from pith_core.keyfile import load_key
    from pith_core.note import SIG_COSIGNATURE_V1, verifier_key

    pair = load_key(args.key)
    print(verifier_key(args.name, pair.public_key, SIG_COSIGNATURE_V1))
    return EXIT_OK


def cmd_witness_serve(args: argparse.Namespace) -> int:
    """`pith witness serve`: answer C2SP add-checkpoint for the logs named by --log."""
    import uvicorn

    from pith_core.keyfile import load_key
    from pith_core.note import NoteError, Verifier

    from .witness import Witness, WitnessState, witness_app

    try:
        logs = {v.name: v for v in (Verifier.parse(vkey) for vkey in args.log or ())}
    except NoteError as e:
        print(f"pith witness serve: --log: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not logs:
        print("pith witness serve: name the logs it witnesses with --log VKEY", file=sys.stderr)
        return EXIT_USAGE
    pair = load_key(args.key)
    witness = Witness(args.name, pair.signing_key, logs, WitnessState(args.state))
    print(
        f"pith witness serve: {args.name} on http://{args.host}:{args.port}/add-checkpoint, "
        f"{len(logs)} log(s)",
        file=sys.stderr,
    )
    uvicorn.run(witness_app(witness), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def cmd_witness(args: argparse.Namespace) -> int:
    import httpx

    from pith_core.keyfile import load_key

    from .client import LogClientError, SplitView, witness_once

    if args.url == "serve":
        return cmd_witness_serve(args)
    pair = load_key(args.key)
    rotations = _rotations(args, "pith witness")
    rounds = 0
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=30) as client:
        keys = _keys(args.key_hex, client)
        while True:
            try:
                result = witness_once(
                    client,
                    keys,
                    args.name,
                    pair.signing_key,
                    args.state,
                    int(time.time()),
                    rotations,
                )
            except SplitView as e:
                print(json.dumps(e.evidence, indent=1))
                print(f"pith witness: split view: {e}", file=sys.stderr)
                return EXIT_FAILED
            except (LogClientError, httpx.HTTPError) as e:
                print(f"pith witness: {e}", file=sys.stderr)
                return EXIT_FAILED
            print(json.dumps(result), flush=True)
            rounds += 1
            if args.rounds and rounds >= args.rounds:
                return EXIT_OK
            time.sleep(args.interval)


def cmd_mirror_pull(args: argparse.Namespace) -> int:
    import httpx

    from pith_core.note import NoteError, Verifier

    from .client import LogClientError, SplitView
    from .mirror import pull

    try:
        witnesses = [Verifier.parse(v) for v in args.witness] if args.witness else None
    except NoteError as e:
        print(f"pith mirror pull: --witness: {e}", file=sys.stderr)
        return EXIT_USAGE
    rotations = _rotations(args, "pith mirror pull")
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=60) as client:
        try:
            keys = _keys(args.key, client)
            result = pull(client, args.dir, keys, witnesses, args.quorum, rotations)
        except SplitView as e:
            print(json.dumps(e.evidence, indent=1))
            print(f"pith mirror pull: split view, nothing written: {e}", file=sys.stderr)
            return EXIT_FAILED
        except (LogClientError, httpx.HTTPError) as e:
            print(f"pith mirror pull: {e}; nothing written", file=sys.stderr)
            return EXIT_FAILED
    print(json.dumps(result))
    return EXIT_OK


def _add_rotations(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rotations",
        type=Path,
        metavar="FILE",
        help="key rotations checkpoints are judged by (a registry's pith-signing-key.json or a "
        "JSON list of signed statements; default: those the registry publishes): a checkpoint "
        "signed by a retired or revoked key past its window is refused",
    )


def register(subparsers: Any) -> None:
    from ..registry.rotation import register as register_key

    register_key(subparsers)  # `pith key rotate`
    key_help = "the registry's raw Ed25519 key in hex (repeatable; default: the one it serves)"
    p = subparsers.add_parser("log", help="the transparency log: fsck, consistency, witness key")
    sub = p.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    f = sub.add_parser(
        "fsck", help="re-derive every tile and the root from the entries; check the checkpoint"
    )
    f.add_argument("url", help="the registry's base URL")
    f.add_argument("--key", action="append", metavar="HEX", help=key_help)
    f.set_defaults(func=cmd_fsck)
    c = sub.add_parser(
        "consistency",
        help="offline: does one signed checkpoint extend another? (prints split-view evidence "
        "when not)",
    )
    c.add_argument("old", type=Path, help="a signed checkpoint note")
    c.add_argument("new", type=Path, help="another signed checkpoint note of the same log")
    c.add_argument("--proof", type=Path, help="the consistency proof (JSON)")
    c.add_argument("--key", action="append", required=True, metavar="HEX", help=key_help)
    c.set_defaults(func=cmd_consistency)
    k = sub.add_parser("witness-key", help="the C2SP verifier key of a witness (for settings)")
    k.add_argument("--key", required=True, type=Path, help="key file from `pith keygen`")
    k.add_argument("--name", required=True, help="the witness's name, e.g. witness.example/w1")
    k.set_defaults(func=cmd_witness_key)

    m = subparsers.add_parser("mirror", help="a static mirror of a registry's log and records")
    msub = m.add_subparsers(dest="mirror_command", required=True, metavar="ACTION")
    mp = msub.add_parser(
        "pull",
        help="fetch the registry's new checkpoint and entries, verify them (signatures, "
        "consistency with the copy held, the root), write them under DIR at the registry's paths",
    )
    mp.add_argument("url", help="the registry's base URL")
    mp.add_argument("--dir", required=True, type=Path, help="the mirror's directory")
    mp.add_argument(
        "--key",
        action="append",
        metavar="HEX",
        help="a registry key events and checkpoints verify under, pinned for the merge "
        "(repeatable; default: the one the registry serves)",
    )
    mp.add_argument(
        "--witness",
        action="append",
        metavar="VKEY",
        help="a witness whose cosignatures count (repeatable; default: those the registry "
        "names in /pith-signing-key.json)",
    )
    mp.add_argument(
        "--quorum",
        type=int,
        default=None,
        help="cosignatures a checkpoint needs before the mirror publishes it (default: the "
        "registry's own quorum); never an unwitnessed checkpoint when above 0",
    )
    _add_rotations(mp)
    mp.set_defaults(func=cmd_mirror_pull)

    w = subparsers.add_parser(
        "witness",
        help="follow a log's checkpoints, check each extends the last, cosign (C2SP "
        "tlog-cosignature) and submit; prints split-view evidence and exits 1 when one does not. "
        "`pith witness serve` instead answers the logs' pushes (C2SP tlog-witness "
        "add-checkpoint)",
    )
    w.add_argument(
        "url", help="the registry's base URL, or `serve` to answer add-checkpoint requests"
    )
    w.add_argument("--key", required=True, type=Path, help="the witness key file (pith keygen)")
    w.add_argument("--name", required=True, help="the witness's name")
    w.add_argument("--state", required=True, type=Path, help="JSON file of the last checkpoint")
    w.add_argument("--log-key", dest="key_hex", action="append", metavar="HEX", help=key_help)
    w.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    w.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: never)")
    w.add_argument(
        "--log",
        action="append",
        metavar="VKEY",
        help="serve: a log it witnesses, as its C2SP verifier key (GET /log → verifier_key; "
        "repeatable)",
    )
    w.add_argument("--host", default="127.0.0.1", help="serve: the address to listen on")
    w.add_argument("--port", type=int, default=8100, help="serve: the port to listen on")
    _add_rotations(w)
    w.set_defaults(func=cmd_witness)
