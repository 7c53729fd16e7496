"""Signed events: ids, the domain-separated signature, and each reason an event is invalid."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from pith_core import EventError, SignatureError, pith_number, sign_event, verify_event
from pith_core.events import EVENT_DOMAIN, event_digest
from pith_core.keys import b64encode

from .conftest import make_event, new_key, record_event


@pytest.fixture
def subject(sample_record: dict) -> str:
    return pith_number(sample_record)


def test_event_id_is_hash_of_canonical_body(author, subject: str) -> None:
    event = make_event(author, subject)
    body = {k: v for k, v in event.items() if k not in ("event_id", "signature_b64")}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert event["event_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert verify_event(event) is event


def test_signature_is_over_domain_prefix_and_digest(author, subject: str) -> None:
    event = make_event(author, subject)
    digest = bytes.fromhex(event["event_id"][7:])
    sig = base64.b64decode(event["signature_b64"])
    VerifyKey(author.public_key).verify(b"pith-event-v1\n" + digest, sig)
    # the same signature does not pass as a receipt (which signs the bare digest)
    with pytest.raises(BadSignatureError):
        VerifyKey(author.public_key).verify(digest, sig)


def test_a_receipt_style_signature_is_not_an_event_signature(author, subject: str) -> None:
    event = make_event(author, subject)
    digest = event_digest(event)
    bare = author.signing_key.sign(digest).signature  # what a receipt would carry
    with pytest.raises(EventError) as e:
        verify_event(dict(event, signature_b64=b64encode(bare)))
    assert e.value.reason == "bad_signature"
    assert EVENT_DOMAIN == b"pith-event-v1\n"


def test_signing_with_another_key_than_the_signer_is_refused(author, subject: str) -> None:
    event = make_event(author, subject)
    unsigned = {k: v for k, v in event.items() if k not in ("event_id", "signature_b64")}
    with pytest.raises(SignatureError):
        sign_event(unsigned, new_key("x", 9))


def resign(event: dict[str, Any], key) -> dict[str, Any]:
    unsigned = {k: v for k, v in event.items() if k not in ("event_id", "signature_b64")}
    return sign_event(unsigned, key)


def reason_of(event: Any, registry_fps=()) -> str:
    with pytest.raises(EventError) as e:
        verify_event(event, registry_fps)
    return e.value.reason


def test_each_invalid_reason(author, registry, subject: str, sample_record: dict) -> None:
    good = make_event(author, subject)
    assert reason_of([good]) == "bad_shape"
    assert reason_of({k: v for k, v in good.items() if k != "prev"}) == "bad_shape"
    assert reason_of(dict(good, extra=1)) == "bad_shape"
    assert reason_of(dict(good, payload={"x": 0.5})) == "not_canonical"
    assert reason_of(dict(good, event_type="alias")) == "bad_shape"
    assert reason_of(dict(good, target="nope")) == "bad_shape"
    assert reason_of(dict(good, created_at="2026-07-01T00:00:00.5Z")) == "bad_shape"
    assert reason_of(dict(good, seq=0)) == "bad_shape"
    assert reason_of(dict(good, seq=True)) == "bad_shape"
    assert reason_of(dict(good, prev="sha256:xyz")) == "bad_shape"
    assert reason_of(dict(good, subject_pith_number="pith:2026:ABC")) == "bad_shape"
    other = new_key("other", 5)
    signer = dict(good["signer"], public_key_b64=b64encode(other.public_key))
    assert reason_of(dict(good, signer=signer)) == "fingerprint_mismatch"
    assert reason_of(dict(good, signer=dict(signer, public_key_b64="!!"))) == "bad_signer"
    assert reason_of(dict(good, payload={"note": "changed"})) == "event_id_mismatch"
    sig = bytearray(base64.b64decode(good["signature_b64"]))
    sig[10] ^= 1
    assert reason_of(dict(good, signature_b64=b64encode(bytes(sig)))) == "bad_signature"


def test_registry_only_targets_need_a_pinned_registry_key(author, registry, sample_record):
    real = record_event(registry, sample_record)
    assert verify_event(real, {registry.fingerprint})
    forged = record_event(author, sample_record)  # well signed, by the wrong key
    assert reason_of(forged, {registry.fingerprint}) == "not_registry_signed"
    subject = pith_number(sample_record)
    for target, payload in [
        ("graph", {"graph_snapshot": {}}),
        ("alias", {"alias_kind": "x", "alias_value": "y"}),
    ]:
        ev = make_event(author, subject, target=target, payload=payload)
        assert reason_of(ev, {registry.fingerprint}) == "not_registry_signed"


def test_payload_shapes(registry, sample_record) -> None:
    fps = {registry.fingerprint}
    subject = pith_number(sample_record)
    ev = record_event(registry, sample_record)
    wrong_hash = copy.deepcopy(ev)
    wrong_hash["payload"]["canonical_sha256"] = "0" * 64
    assert reason_of(resign(wrong_hash, registry), fps) == "bad_payload"
    other_subject = dict(ev, subject_pith_number="pith:2026:" + "A" * 26)
    assert reason_of(resign(other_subject, registry), fps) == "bad_payload"
    bad_replication = make_event(registry, subject, target="replication", payload={"verdict": "ok"})
    assert reason_of(bad_replication, fps) == "bad_payload"
    good_replication = make_event(
        registry, subject, target="replication", payload={"claim_id": "c", "verdict": "replicated"}
    )
    assert verify_event(good_replication, fps)
