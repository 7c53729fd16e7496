"""The registry's key history: the rotation statements of the settings, checked to chain up to
the key this registry signs with now, as windows the key document publishes; and
`pith key rotate`, which writes a statement signed by the old key."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pith_core.keys import KeyPair
from pith_core.rotation import KeyWindow, key_history

from ..settings import Settings
from .service import RegistryIdentity


def windows_for(settings: Settings, key: KeyPair) -> list[KeyWindow]:
    """Every key of this registry, oldest first, with its window (one window when no rotation).
    ValueError when the statements do not end at `key` (the key in PITH_KEY_FILE)."""
    statements = settings.rotation_statements
    if not statements:
        return [KeyWindow(key.public_key, key.key_id, None, None, 0, None)]
    windows = key_history(bytes.fromhex(statements[0]["old_public_key_hex"]), statements)
    if windows[-1].public_key != key.public_key:
        raise ValueError(
            "PITH_KEY_ROTATIONS end at key "
            f"{windows[-1].public_key.hex()[:16]}…, not at the key of PITH_KEY_FILE"
        )
    return windows


def key_windows(settings: Settings, identity: RegistryIdentity) -> list[KeyWindow]:
    return list(identity.key_windows) or windows_for(settings, identity.key)


def key_history_document(settings: Settings, identity: RegistryIdentity) -> dict[str, Any]:
    """What the key document adds: every key with its window, and the signed rotations."""
    return {
        "keys": [w.document() for w in key_windows(settings, identity)],
        "rotations": settings.rotation_statements,
    }


def cmd_rotate(args: argparse.Namespace) -> int:
    from pith_core.keyfile import load_key
    from pith_core.rotation import sign_rotation

    old, new = load_key(args.old), load_key(args.new)
    statement = sign_rotation(
        old.signing_key,
        old.key_id,
        new.public_key,
        new.key_id,
        takes_over_at=args.takes_over_at,
        checkpoints_through=args.checkpoints_through,
        revoked_since=args.revoked_since,
    )
    if args.out.exists():
        print(f"pith key rotate: {args.out} exists; not overwritten", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(statement, indent=1) + "\n")
    print(f"wrote {args.out}: add it to PITH_KEY_ROTATIONS, set PITH_KEY_FILE={args.new}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("key", help="the registry's signing key: rotate")
    sub = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    r = sub.add_parser(
        "rotate",
        help="write a rotation statement signed by the old key naming the new key and when it "
        "takes over",
    )
    r.add_argument("--old", required=True, type=Path, help="the retiring key file")
    r.add_argument("--new", required=True, type=Path, help="the new key file (pith keygen)")
    r.add_argument("--takes-over-at", required=True, help="YYYY-MM-DDTHH:MM:SSZ")
    r.add_argument(
        "--checkpoints-through",
        required=True,
        type=int,
        help="the largest tree size the old key's checkpoints cover (GET /log → tree_size)",
    )
    r.add_argument(
        "--revoked-since",
        default=None,
        help="YYYY-MM-DDTHH:MM:SSZ: the old key is compromised; its signatures from then on "
        "do not verify",
    )
    r.add_argument("--out", required=True, type=Path, help="where to write the statement (JSON)")
    r.set_defaults(func=cmd_rotate)
