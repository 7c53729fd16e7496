"""The deterministic merge: order-, duplication- and split-independence, equivocation, forgery."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from pith_core import canonical_json, merge, pith_number, state_sha256, verify_event
from pith_core.canonical import canonical_sha256

from .conftest import make_event, new_key, record_event

REGISTRY = new_key("test-registry", 1)
AUTHOR = new_key("author", 2)
WORKER = new_key("gpu-worker", 3)
MALLORY = new_key("mallory", 4)


def build_pool() -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Events of one subject: valid ones of every kind, an equivocation, and invalid ones."""
    from pith_core import canonical_record

    from .conftest import SAMPLE_META

    record = canonical_record(SAMPLE_META)
    subject = pith_number(record)
    rec = record_event(REGISTRY, record)
    graph = make_event(
        REGISTRY,
        subject,
        target="graph",
        seq=2,
        prev=rec["event_id"],
        payload={"graph_snapshot": {"paper": {}}, "verdict_id": None},
        signer_type="pith_registry",
    )
    a1 = make_event(AUTHOR, subject, created_at="2026-07-01T00:00:00Z")
    a2 = make_event(
        AUTHOR,
        subject,
        seq=2,
        prev=a1["event_id"],
        created_at="2026-07-02T00:00:00Z",
        target="citation_signature",
    )
    rep = make_event(
        WORKER,
        subject,
        target="replication",
        created_at="2026-07-01T00:00:00Z",
        payload={"claim_id": "forge", "verdict": "replicated", "figures": {"speedup": "1.5"}},
        signer_type="gpu_worker",
    )
    # the worker equivocates at seq 2
    e1 = make_event(
        WORKER,
        subject,
        target="replication",
        seq=2,
        prev=rep["event_id"],
        payload={"claim_id": "forge", "verdict": "replicated"},
    )
    e2 = make_event(
        WORKER,
        subject,
        target="replication",
        seq=2,
        prev=rep["event_id"],
        payload={"claim_id": "forge", "verdict": "not_replicated"},
    )
    tampered = copy.deepcopy(a1)
    tampered["payload"] = {"note": "tampered"}  # reuses a1's real event_id
    forged_record = record_event(MALLORY, record)
    bad_sig = dict(a2, signature_b64=rep["signature_b64"])
    other_subject = make_event(AUTHOR, "pith:2026:" + "B" * 26)
    valid = [rec, graph, a1, a2, rep, e1, e2]
    invalid = [tampered, forged_record, bad_sig, other_subject, {"not": "an event"}, [1, 2]]
    return subject, {"rec": rec, "a1": a1, "e1": e1, "e2": e2, "rep": rep}, valid + invalid


SUBJECT, NAMED, POOL = build_pool()
KEYS = [REGISTRY.public_key]


def run(events: list[Any]) -> dict[str, Any]:
    return merge(events, KEYS, subject=SUBJECT)


FULL = run(POOL)


def test_counts_and_lists() -> None:
    s = FULL
    assert (s["valid_event_count"], s["invalid_event_count"], s["equivocation_count"]) == (7, 6, 1)
    assert s["event_count"] == 13
    assert s["current"]["record_created"]["event_id"] == NAMED["rec"]["event_id"]
    assert len(s["current"]["replication_records"]) == 1  # the equivocating pair is not applied
    assert len(s["current"]["graph_snapshots"]) == 1
    assert len(s["current"]["author_attestations"]) == 1
    assert len(s["current"]["citation_signatures"]) == 1
    assert len(s["applied_event_ids"]) == 5
    assert [a["alias_kind"] for a in s["current"]["source_aliases"]] == sorted(
        a["alias_kind"] for a in s["current"]["source_aliases"]
    )
    assert "public_key_b64" not in s["current"]["record_created"]["signer"]
    assert s["state_sha256"] == state_sha256(s)


def test_applied_in_created_at_then_id_order() -> None:
    by_id = {e["event_id"]: e for e in POOL if isinstance(e, dict) and "event_id" in e}
    keys = [(by_id[i]["created_at"], i) for i in FULL["applied_event_ids"]]
    assert keys == sorted(keys)


def test_equivocation_is_listed_with_a_checkable_proof() -> None:
    (eq,) = FULL["equivocations"]
    assert eq["signer_fingerprint"] == WORKER.fingerprint and eq["seq"] == 2
    ids = {NAMED["e1"]["event_id"], NAMED["e2"]["event_id"]}
    assert set(eq["event_ids"]) == ids
    # the proof is offline-checkable: both events verify, same signer and seq, different ids
    for ev in eq["events"]:
        verify_event(ev)
    a, b = eq["events"]
    assert a["signer"] == b["signer"] and a["seq"] == b["seq"] and a["event_id"] != b["event_id"]
    assert not ids & set(FULL["applied_event_ids"])


def _count_ed25519(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = VerifyKey.verify

    def counting(self: VerifyKey, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(VerifyKey, "verify", counting)
    return calls


def test_exact_copies_cost_one_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_ed25519(monkeypatch)
    a1 = NAMED["a1"]
    state = run([a1, copy.deepcopy(a1), copy.deepcopy(a1)])
    assert len(calls) == 1 and state["valid_event_count"] == 1
    # a copy under another signature is checked, and refused
    calls.clear()
    forged = dict(a1, signature_b64=NAMED["rep"]["signature_b64"])
    state = run([a1, forged])
    assert len(calls) == 2 and state["invalid_event_count"] == 1


def test_pairs_the_caller_verified_are_trusted_and_left_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_ed25519(monkeypatch)
    a1, a2 = NAMED["a1"], POOL[3]
    pairs = {(bytes.fromhex(a1["event_id"][7:]), a1["signature_b64"])}
    given_pairs = set(pairs)
    state = merge([a1, a2, copy.deepcopy(a2)], KEYS, subject=SUBJECT, verified=pairs)
    assert len(calls) == 1  # a2 once; a1 not at all
    assert state["valid_event_count"] == 2
    assert pairs == given_pairs


def test_a_tampered_copy_never_hides_the_real_event() -> None:
    tampered = copy.deepcopy(NAMED["a1"])
    tampered["payload"] = {"note": "tampered"}
    for order in ([tampered, NAMED["a1"]], [NAMED["a1"], tampered]):
        state = run([NAMED["rec"], *order])
        assert NAMED["a1"]["event_id"] in state["applied_event_ids"]
        assert [e["reason"] for e in state["invalid_events"]] == ["event_id_mismatch"]
        assert state["invalid_events"][0]["claimed_event_id"] == NAMED["a1"]["event_id"]


def test_forged_registry_events_are_invalid_with_a_reason() -> None:
    reasons = sorted(e["reason"] for e in FULL["invalid_events"])
    assert reasons == sorted(
        [
            "event_id_mismatch",
            "not_registry_signed",
            "bad_signature",
            "wrong_subject",
            "bad_shape",
            "bad_shape",
        ]
    )
    forged = record_event(MALLORY, NAMED["rec"]["payload"]["canonical_record"])
    alone = run([forged])
    assert (
        alone["current"]["record_created"] is None and alone["current"]["canonical_record"] is None
    )


def test_subject_is_inferred_or_required() -> None:
    assert merge([NAMED["a1"]], KEYS)["pith_number"] == SUBJECT
    with pytest.raises(ValueError, match="subject"):
        merge([NAMED["a1"], make_event(AUTHOR, "pith:2026:" + "C" * 26)], KEYS)


def test_empty_set_with_subject() -> None:
    state = merge([], KEYS, subject=SUBJECT)
    assert state["event_count"] == 0 and state["current"]["canonical_record"] is None


def test_state_is_canonical() -> None:
    assert (
        canonical_sha256({k: v for k, v in FULL.items() if k != "state_sha256"})
        == FULL["state_sha256"]
    )
    canonical_json(FULL)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_permutation_gives_identical_state(rnd: random.Random) -> None:
    events = list(POOL)
    rnd.shuffle(events)
    assert canonical_json(run(events)) == canonical_json(FULL)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=len(POOL) - 1), max_size=30),
    st.randoms(use_true_random=False),
)
def test_duplication_gives_identical_state(dups: list[int], rnd: random.Random) -> None:
    events = list(POOL) + [copy.deepcopy(POOL[i]) for i in dups]
    rnd.shuffle(events)
    assert canonical_json(run(events)) == canonical_json(FULL)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "both"]), min_size=len(POOL), max_size=len(POOL)),
    st.randoms(use_true_random=False),
)
def test_any_split_and_union_gives_identical_state(sides: list[str], rnd: random.Random) -> None:
    mirror_a = [e for e, s in zip(POOL, sides, strict=True) if s in ("a", "both")]
    mirror_b = [e for e, s in zip(POOL, sides, strict=True) if s in ("b", "both")]
    union = mirror_b + mirror_a
    rnd.shuffle(union)
    assert canonical_json(run(union)) == canonical_json(FULL)
    # and each mirror's partial state is itself order-independent
    assert run(list(reversed(mirror_a)))["state_sha256"] == run(mirror_a)["state_sha256"]
