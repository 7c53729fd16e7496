"""Keys on disk (mode 0600, never overwritten) and receipts signed and verified."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pith_core import SignatureError, canonical_sha256, sign_receipt, verify_receipt
from pith_core.keyfile import load_key, load_or_create_key, save_key
from pith_core.keys import KeyPair, generate_signing_key

from .conftest import new_key


def test_keyfile_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    pair = KeyPair(generate_signing_key(), "kid")
    save_key(path, pair)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_key(path)
    assert loaded.public_key == pair.public_key and loaded.key_id == "kid"


def test_keyfile_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    save_key(path, KeyPair(generate_signing_key(), "a"))
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_key(path, KeyPair(generate_signing_key(), "b"))
    assert path.read_bytes() == before


def test_keyfile_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    save_key(path, KeyPair(generate_signing_key(), "a"))
    os.chmod(path, 0o644)
    with pytest.raises(SignatureError, match="0600"):
        load_key(path)


def test_load_or_create_creates_once(tmp_path: Path) -> None:
    path = tmp_path / "registry.key"
    first = load_or_create_key(path, "reg")
    second = load_or_create_key(path, "other-name-ignored")
    assert first.public_key == second.public_key and second.key_id == "reg"


def test_receipt_round_trip_and_wrong_key(sample_record: dict) -> None:
    key, other = new_key("reg", 7), new_key("reg", 8)
    at = datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=UTC)
    receipt = sign_receipt(sample_record, key, signed_at=at)
    digest = canonical_sha256(sample_record)
    assert receipt["canonical_sha256"] == digest
    assert receipt["signed_at"] == "2026-07-01T12:00:00.123456Z"
    assert receipt["public_key_fingerprint"] == key.fingerprint
    verify_receipt(receipt, digest, key.public_key)
    with pytest.raises(SignatureError, match="fingerprint"):
        verify_receipt(receipt, digest, other.public_key)
    forged = dict(receipt, public_key_fingerprint=other.fingerprint)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_receipt(forged, digest, other.public_key)


def test_receipt_signature_in_non_canonical_base64_is_refused(sample_record: dict) -> None:
    key = new_key("reg", 7)
    receipt = sign_receipt(sample_record, key, signed_at=datetime.now(UTC))
    sloppy = dict(receipt, signature_b64=receipt["signature_b64"].rstrip("="))
    with pytest.raises(SignatureError, match="base64"):
        verify_receipt(sloppy, canonical_sha256(sample_record), key.public_key)
