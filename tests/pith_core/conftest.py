"""Fixtures for the protocol tests: the real public seeds, and fresh keys and events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from pith_core import PaperMetadata, build_event, canonical_record, sign_event, signer_info
from pith_core.keys import KeyPair
from pith_core.number import pith_number

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
RECORD_SEEDS = ["000_bb6af81192257719.txt", "004_18bd272ff3acff2f.txt"]
STATE_SEEDS = ["001_20727aab6b29d5e1.txt", "003_6d8ca70aa66ab393.txt"]
PAGE_SEED = "002_208f6f75bdc33b35.txt"


def load_seed(name: str) -> dict[str, Any]:
    return json.loads((SEEDS / name).read_text())


def new_key(key_id: str, seed: int) -> KeyPair:
    return KeyPair(SigningKey(bytes([seed]) * 32), key_id)


@pytest.fixture
def registry() -> KeyPair:
    return new_key("test-registry", 1)


@pytest.fixture
def author() -> KeyPair:
    return new_key("author-key", 2)


SAMPLE_META = PaperMetadata(
    arxiv_id="2606.00001",
    version=1,
    title="A  Sample\nTitle about Erd\\H{o}s",
    abstract="An abstract.",
    submitted_at="2026-06-01T12:00:00Z",
    primary_cat="cs.LG",
    cross_cats=("stat.ML", "cs.AI", "cs.LG"),
    license="http://creativecommons.org/licenses/by/4.0/",
)


@pytest.fixture
def sample_record() -> dict[str, Any]:
    return canonical_record(SAMPLE_META)


def make_event(
    key: KeyPair,
    subject: str,
    *,
    target: str = "author_attestation",
    seq: int = 1,
    prev: str | None = None,
    created_at: str = "2026-07-01T00:00:00Z",
    payload: dict[str, Any] | None = None,
    signer_type: str = "author",
) -> dict[str, Any]:
    unsigned = build_event(
        target=target,
        subject=subject,
        created_at=created_at,
        seq=seq,
        prev=prev,
        signer=signer_info(key, signer_id=key.key_id, signer_type=signer_type),
        payload=payload if payload is not None else {"note": f"{target} {seq}"},
    )
    return sign_event(unsigned, key)


def record_event(registry: KeyPair, record: dict[str, Any], seq: int = 1) -> dict[str, Any]:
    from pith_core import canonical_sha256

    return make_event(
        registry,
        pith_number(record),
        target="record",
        seq=seq,
        created_at="2026-06-02T00:00:00Z",
        payload={
            "attestation_state": "computed",
            "canonical_record": record,
            "canonical_sha256": canonical_sha256(record),
            "receipt": None,
            "source_id": record["source"]["id"],
            "source_kind": "arxiv",
            "source_version": record["source"]["version"],
        },
        signer_type="pith_registry",
    )
