"""Signing keys on disk: the one module of pith_core that touches files.

A key file is JSON `{kind, algorithm, key_id, seed_b64, public_key_hex, fingerprint}`, created
with mode 0600 in one step (O_CREAT|O_EXCL), never overwritten, and refused when others can read it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from nacl.signing import SigningKey

from .errors import SignatureError
from .keys import KeyPair, b64decode_strict, b64encode, signing_key_from_seed

KEY_FILE_KIND = "pith_signing_key"


def save_key(path: Path | str, pair: KeyPair) -> None:
    """Write `pair` to a new file readable by its owner only; refuse to overwrite."""
    doc = {
        "kind": KEY_FILE_KIND,
        "algorithm": "ed25519",
        "key_id": pair.key_id,
        "seed_b64": b64encode(bytes(pair.signing_key)),
        "public_key_hex": pair.public_key.hex(),
        "fingerprint": pair.fingerprint,
    }
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_key(path: Path | str) -> KeyPair:
    """Read a key file; refuse one that group or others may read, or whose parts disagree."""
    p = Path(path)
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise SignatureError(f"key file {p} has mode {mode:o}; it must be 0600 (owner only)")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SignatureError(f"key file {p} is not JSON: {e.msg}") from e
    if not isinstance(doc, dict) or doc.get("kind") != KEY_FILE_KIND:
        raise SignatureError(f"{p} is not a Pith signing key file")
    key = signing_key_from_seed(b64decode_strict(doc.get("seed_b64", ""), "seed_b64"))
    pair = KeyPair(key, str(doc.get("key_id", "")))
    if doc.get("public_key_hex") != pair.public_key.hex():
        raise SignatureError(f"key file {p}: public_key_hex does not match the seed")
    return pair


def load_or_create_key(path: Path | str, key_id: str) -> KeyPair:
    """The key in `path`, created there on first use."""
    try:
        return load_key(path)
    except FileNotFoundError:
        pair = KeyPair(SigningKey.generate(), key_id)
        try:
            save_key(path, pair)
        except FileExistsError:  # another process created it first: use theirs
            return load_key(path)
        return pair
