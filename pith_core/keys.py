"""Ed25519 keys as plain values: raw 32-byte public keys, their fingerprints and encodings."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from nacl.signing import SigningKey, VerifyKey

from .errors import SignatureError

# The public registry (pith.science): its key as published in its mirror manifest.
PUBLIC_REGISTRY_KEY_HEX = "b2d552b68890857171a78b36a5dccf368a953413288c353f7c9d9d6f94b709b3"
PUBLIC_REGISTRY_KEY_ID = "pith-v1-2026-05"

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def generate_signing_key() -> SigningKey:
    return SigningKey.generate()


def signing_key_from_seed(seed: bytes) -> SigningKey:
    if len(seed) != 32:
        raise SignatureError("an Ed25519 seed is 32 bytes")
    return SigningKey(seed)


def fingerprint(public_key: bytes) -> str:
    """Hex of the first 16 bytes of SHA-256 of the raw 32-byte public key."""
    if len(public_key) != 32:
        raise SignatureError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(public_key).digest()[:16].hex()


def public_key_bytes(key: SigningKey | VerifyKey) -> bytes:
    vk = key.verify_key if isinstance(key, SigningKey) else key
    return bytes(vk)


def public_key_from_hex(text: str) -> bytes:
    """A raw Ed25519 public key given as 64 hex digits (as registry manifests publish it)."""
    if not isinstance(text, str) or not _HEX_KEY.fullmatch(text.strip()):
        raise SignatureError(f"{text!r} is not a raw Ed25519 public key in hex (64 hex digits)")
    return bytes.fromhex(text.strip())


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 with padding, nothing else (so one value has one encoding)."""
    if not isinstance(text, str):
        raise SignatureError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureError(f"{what} is not standard base64: {e}") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise SignatureError(f"{what} is not in canonical standard base64")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class KeyPair:
    """A signing key with the name it signs under."""

    signing_key: SigningKey
    key_id: str

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.signing_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)
