"""C2SP signed notes (signed-note), log checkpoints (tlog-checkpoint) and witness cosignatures
(tlog-cosignature, cosignature/v1), so that the tools and witnesses of the Go checksum database,
Sigsum and Tessera read Pith's log as they read theirs.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
`— <key name> base64(4-byte key hash || signature)`. The key hash binds the key name and the
signature type: SHA-256(name || "\\n" || type || public key)[:4], type 0x01 for an Ed25519 note
signature and 0x04 for an Ed25519 cosignature (which signs `cosignature/v1`, a `time` line and
the note body, and carries its 8-byte big-endian timestamp before the signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .tlog import HASH_SIZE

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "  # an em dash and a space open every signature line
_NAME = re.compile(r"[^\s+]+")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


class NoteError(ValueError):
    """A note, checkpoint or signature that is malformed or does not verify."""


def key_hash(name: str, sig_type: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def verifier_key(name: str, public_key: bytes, sig_type: int = SIG_ED25519) -> str:
    """The vkey string `<name>+<hex key hash>+<base64(type || key)>` of signed-note."""
    _check_name(name)
    material = base64.b64encode(bytes([sig_type]) + public_key).decode()
    return f"{name}+{key_hash(name, sig_type, public_key).hex()}+{material}"


@dataclass(frozen=True)
class Verifier:
    """A key a client trusts for a note: its name, type and raw Ed25519 public key."""

    name: str
    public_key: bytes
    sig_type: int = SIG_ED25519

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.sig_type, self.public_key)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        try:
            name, hash_hex, material_b64 = vkey.strip().split("+", 2)
            material = base64.b64decode(material_b64, validate=True)
        except (ValueError, binascii.Error) as e:
            raise NoteError(f"not a verifier key: {vkey!r}") from e
        _check_name(name)
        if len(material) != 33 or material[0] not in (SIG_ED25519, SIG_COSIGNATURE_V1):
            raise NoteError("a verifier key holds a type byte and a 32-byte Ed25519 key")
        out = cls(name, material[1:], material[0])
        if out.key_hash.hex() != hash_hex:
            raise NoteError("the verifier key's hash does not match its name and key")
        return out


@dataclass(frozen=True)
class Signature:
    name: str
    key_hash: bytes
    signature: bytes  # for a cosignature: 8-byte timestamp || 64-byte signature

    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_hash + self.signature).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str  # the body, ending in "\n"
    signatures: tuple[Signature, ...]

    def serialize(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


MAX_SIGNATURES = 100  # as Go's note package: a log and its witnesses, with room to spare


def parse_note(raw: str | bytes) -> Note:
    """Split a signed note into its text and signature lines (nothing verified yet)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteError("a note is UTF-8") from e
    if any(c < " " and c != "\n" for c in raw):
        raise NoteError("a note holds no control characters but newlines")
    text, sep, sigs = raw.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise NoteError("a note is text, a blank line and signature lines, each ending in \\n")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:  # each is an Ed25519 check for whoever opens the note
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signature lines")
    if len(set(lines)) != len(lines):
        raise NoteError("a note carries each signature line once")
    return Note(text + "\n", tuple(parse_signature_line(line) for line in lines))


def parse_signature_line(line: str) -> Signature:
    """One signature line (`— name base64(key hash || signature)`, without its newline)."""
    if not line.startswith(_DASH):
        raise NoteError(f"not a signature line: {line!r}")
    name, _, b64 = line[len(_DASH) :].partition(" ")
    _check_name(name)
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"signature of {name} is not base64") from e
    if len(blob) < 5:
        raise NoteError(f"signature of {name} is too short")
    return Signature(name, blob[:4], blob[4:])


def sign_note(text: str, name: str, key: SigningKey) -> Signature:
    _check_name(name)
    if not text.endswith("\n"):
        raise NoteError("note text ends in a newline")
    pub = bytes(key.verify_key)
    return Signature(name, key_hash(name, SIG_ED25519, pub), key.sign(text.encode()).signature)


def _ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def cosignature_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def cosign(text: str, name: str, key: SigningKey, timestamp: int) -> Signature:
    """A witness's cosignature/v1 on a checkpoint body at `timestamp` (POSIX seconds)."""
    _check_name(name)
    if not 0 <= timestamp < 2**63:
        raise NoteError("a cosignature timestamp is between 0 and 2^63 - 1")
    pub = bytes(key.verify_key)
    sig = key.sign(cosignature_message(text, timestamp)).signature
    return Signature(
        name, key_hash(name, SIG_COSIGNATURE_V1, pub), struct.pack(">Q", timestamp) + sig
    )


def signature_verifies(note: Note, sig: Signature, verifier: Verifier) -> bool:
    """Whether `sig` is `verifier`'s valid signature (or cosignature) on `note`'s text."""
    if sig.name != verifier.name or sig.key_hash != verifier.key_hash:
        return False
    if verifier.sig_type == SIG_ED25519:
        return len(sig.signature) == 64 and _ed25519_ok(
            verifier.public_key, note.text.encode(), sig.signature
        )
    if len(sig.signature) != 72:
        return False
    (timestamp,) = struct.unpack(">Q", sig.signature[:8])
    return timestamp < 2**63 and _ed25519_ok(
        verifier.public_key, cosignature_message(note.text, timestamp), sig.signature[8:]
    )


def cosignature_time(sig: Signature) -> int:
    return struct.unpack(">Q", sig.signature[:8])[0]


def open_note(raw: str | bytes, verifiers: Iterable[Verifier]) -> tuple[Note, list[Verifier]]:
    """Parse `raw` and return it with the verifiers that validly signed it; NoteError when none
    did, or when a line names a known key but its signature is bad (a forgery, not an unknown
    signer)."""
    note = parse_note(raw)
    by_hash = {(v.name, v.key_hash): v for v in verifiers}
    good: list[Verifier] = []
    for sig in note.signatures:
        v = by_hash.get((sig.name, sig.key_hash))
        if v is None:
            continue
        if not signature_verifies(note, sig, v):
            raise NoteError(f"the signature of {sig.name} does not verify")
        if v not in good:
            good.append(v)
    if not good:
        raise NoteError("no signature on the note is from a known key")
    return note, good


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint is origin, size and root hash lines, each ending in \\n")
    origin, size, root_b64, *ext = lines[:-1]
    if not origin:
        raise NoteError("a checkpoint's origin line is not empty")
    if not _SIZE.fullmatch(size) or int(size) >= 2**64:
        raise NoteError(f"checkpoint size {size!r} is not a decimal below 2^64")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError("checkpoint root hash is not base64") from e
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_b64:
        raise NoteError("checkpoint root hash is not a 32-byte hash in standard base64")
    if any(not e for e in ext):
        raise NoteError("checkpoint extension lines are not empty")
    return Checkpoint(origin, int(size), root, tuple(ext))


def sign_checkpoint(checkpoint: Checkpoint, name: str, key: SigningKey) -> str:
    """The signed note of `checkpoint` under the log's key `name`."""
    text = checkpoint.text()
    return Note(text, (sign_note(text, name, key),)).serialize()


def open_checkpoint(
    raw: str | bytes, log_verifier: Verifier, origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint under the log's key (and origin, when given)."""
    note, _ = open_note(raw, [log_verifier])
    checkpoint = parse_checkpoint(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"the checkpoint is of log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint, note


def add_signatures(raw: str, extra: Sequence[Signature]) -> str:
    """`raw` with `extra` signature lines appended (skipping those it already holds)."""
    note = parse_note(raw)
    sigs = list(note.signatures)
    sigs.extend(s for s in extra if s not in sigs)
    return Note(note.text, tuple(sigs)).serialize()


def count_cosigners(note: Note, witnesses: Iterable[Verifier]) -> list[Verifier]:
    """The witnesses whose valid cosignature the note carries."""
    good: list[Verifier] = []
    for w in witnesses:
        if any(signature_verifies(note, s, w) for s in note.signatures):
            good.append(w)
    return good
