"""Compatibility with the public registry: every seed's hash, number, receipt and state hash."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from typing import Any

import pytest

from pith_core import (
    PUBLIC_REGISTRY_KEY_HEX,
    SignatureError,
    canon_text,
    canonical_sha256,
    fingerprint,
    pith_number,
    record_aliases,
    short_pith_number,
    state_sha256,
    verify_receipt,
)
from pith_core.verify import verify_document

from .conftest import PAGE_SEED, RECORD_SEEDS, SEEDS, STATE_SEEDS, load_seed

KEY = bytes.fromhex(PUBLIC_REGISTRY_KEY_HEX)


def record_and_receipt(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if "record_type" in doc:
        return doc["canonical_record"], doc["receipt"]
    payload = doc["current"]["record_created"]["payload"]
    return doc["current"]["canonical_record"], payload["receipt"]


def title_of(doc: dict[str, Any]) -> str:
    if "record_type" in doc:
        return doc["paper"]["title"]
    return doc["current"]["graph_snapshots"][0]["payload"]["graph_snapshot"]["paper"]["title"]


def test_public_key_fingerprint_matches_the_manifest() -> None:
    assert fingerprint(KEY) == "8d4b5ee74e4693bcd1df2446408b0d54"


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
def test_seed_hash_number_and_receipt(name: str) -> None:
    doc = load_seed(name)
    record, receipt = record_and_receipt(doc)
    digest = canonical_sha256(record)
    assert digest == receipt["canonical_sha256"]
    assert pith_number(record) == doc["pith_number"]
    if "short_pith_number" in doc:
        assert short_pith_number(doc["pith_number"]) == doc["short_pith_number"]
        assert digest == doc["canonical_sha256"]
    verify_receipt(receipt, digest, KEY)


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
def test_seed_documents_verify_whole(name: str) -> None:
    kind, checks = verify_document(load_seed(name), KEY)
    assert kind in ("record", "state")
    assert [c.name for c in checks if not c.passed] == []
    assert "receipt" in {c.name for c in checks}


def flip_bit(b64: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[bit // 8] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
@pytest.mark.parametrize("bit", [0, 7, 200, 511])
def test_receipt_fails_after_flipping_a_signature_bit(name: str, bit: int) -> None:
    record, receipt = record_and_receipt(load_seed(name))
    bad = dict(receipt, signature_b64=flip_bit(receipt["signature_b64"], bit))
    with pytest.raises(SignatureError):
        verify_receipt(bad, canonical_sha256(record), KEY)


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
@pytest.mark.parametrize("nibble", [0, 31, 63])
def test_receipt_fails_after_flipping_a_hash_bit(name: str, nibble: int) -> None:
    record, receipt = record_and_receipt(load_seed(name))
    digest = canonical_sha256(record)
    flipped = digest[:nibble] + format(int(digest[nibble], 16) ^ 1, "x") + digest[nibble + 1 :]
    # the hash the receipt names is changed, and the hash it is checked against
    with pytest.raises(SignatureError):
        verify_receipt(dict(receipt, canonical_sha256=flipped), flipped, KEY)
    with pytest.raises(SignatureError):
        verify_receipt(receipt, flipped, KEY)


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(value, list):
        if not value:
            return [path]
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))]
    return [path]


def mutate(value: Any) -> Any:
    if isinstance(value, str):
        return value[:-1] + chr(ord(value[-1]) ^ 1) if value else "x"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ 1
    if isinstance(value, list):
        return ["cs.XX"]
    raise AssertionError(f"unexpected leaf {value!r}")


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
def test_receipt_fails_after_changing_any_canonical_field(name: str) -> None:
    record, receipt = record_and_receipt(load_seed(name))
    paths = leaf_paths(record)
    named = {p[:2] if p[0] != "schema_version" else p[:1] for p in paths}
    assert len(named) == 10  # every field of the canonical record is exercised
    for path in paths:
        changed = copy.deepcopy(record)
        parent = changed
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = mutate(parent[path[-1]])
        with pytest.raises(SignatureError):
            verify_receipt(receipt, canonical_sha256(changed), KEY)


@pytest.mark.parametrize("name", STATE_SEEDS)
def test_state_sha256_recomputes(name: str) -> None:
    state = load_seed(name)
    raw = {k: v for k, v in state.items() if k != "state_sha256"}
    expected = hashlib.sha256(
        json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert state_sha256(state) == expected == state["state_sha256"]
    state["current"]["replication_records"].append({"forged": True})
    assert state_sha256(state) != state["state_sha256"]


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
def test_title_canon_on_seed_titles(name: str) -> None:
    doc = load_seed(name)
    record, _ = record_and_receipt(doc)
    title = title_of(doc)
    expected = record["metadata"]["title_canon_sha256"]
    assert hashlib.sha256(canon_text(title).encode()).hexdigest() == expected
    # white space added as arXiv wraps titles does not change the canon
    wrapped = "  " + title.replace(" ", "\n  ", 2) + " \t"
    assert hashlib.sha256(canon_text(wrapped).encode()).hexdigest() == expected


@pytest.mark.parametrize("name", STATE_SEEDS)
def test_aliases_derive_as_in_the_seed_states(name: str) -> None:
    state = load_seed(name)
    published = [(a["alias_kind"], a["alias_value"]) for a in state["current"]["source_aliases"]]
    assert record_aliases(state["current"]["canonical_record"]) == published


def test_page_seed_record_hash_and_number() -> None:
    text = (SEEDS / PAGE_SEED).read_text()
    block = text[text.index("Canonical record JSON") :]
    record = json.loads(block[block.index("{") :])
    expected_hash = re.search(r"# expect: ([0-9a-f]{64})", text).group(1)
    assert canonical_sha256(record) == expected_hash
    full = re.search(r"^(pith:\d{4}:[A-Z2-7]{26})$", text, re.M).group(1)
    assert pith_number(record) == full
    assert short_pith_number(full) == re.search(r"^(pith:[A-Z2-7]{8})$", text, re.M).group(1)
    title = text.splitlines()[8]
    assert canon_text(title) == "sage: sign-adaptive gradient for memory-efficient llm optimization"
    assert (
        hashlib.sha256(canon_text(title).encode()).hexdigest()
        == record["metadata"]["title_canon_sha256"]
    )
