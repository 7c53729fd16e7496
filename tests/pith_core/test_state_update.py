"""`extend_state` against the specification: a state grown by new events has the bytes of the
merge of all events, recomputed from scratch, on random event sets (equivocations included)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from pith_core.canonical import canonical_json
from pith_core.events import build_event, sign_event, signer_info
from pith_core.keys import KeyPair
from pith_core.merge import merge, merge_sealed, seal
from pith_core.state_update import extend_state, extend_state_sealed

SUBJECT = "pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF"
KEYS = [KeyPair(SigningKey(bytes([i + 1]) * 32), f"k{i}") for i in range(3)]
TARGETS = ["timestamp_anchor", "storage_attestation", "citation_signature", "replication"]
TIMES = [f"2026-11-2{d}T0{h}:00:00Z" for d in range(3) for h in range(3)]


def _event(key: int, seq: int, target: str, at: str, note: int) -> dict:
    payload = (
        {"claim_id": "c", "verdict": "replicated", "n": str(note)}
        if target == "replication"
        else {"note": str(note)}
    )
    k = KEYS[key]
    unsigned = build_event(
        target=target,
        subject=SUBJECT,
        created_at=at,
        seq=seq,
        prev=None,
        signer=signer_info(k, signer_id=f"s{key}", signer_type="t"),
        payload=payload,
    )
    return sign_event(unsigned, k)


events_strategy = st.lists(
    st.builds(
        _event,
        st.integers(0, 2),
        st.integers(1, 4),  # few seqs: equivocations are common
        st.sampled_from(TARGETS),
        st.sampled_from(TIMES),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=14,
)


def _answers(known: list[dict]) -> tuple:
    """What a store answers about the events of a state (`known`), as callables."""
    by_id = {e["event_id"]: e for e in known}

    def holder_of(slot: tuple[str, int]) -> str | None:
        for e in known:
            if (e["signer"]["public_key_fingerprint"], e["seq"]) == slot:
                return e["event_id"]
        return None

    return (lambda eid: by_id[eid]["created_at"]), holder_of, (lambda eid: by_id[eid])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.data())
def test_extending_a_state_gives_the_bytes_of_the_full_merge(events: list[dict], data) -> None:  # type: ignore[no-untyped-def]
    split = data.draw(st.integers(0, len(events)))
    old, new = events[:split], events[split:]
    expected = merge(events, [], subject=SUBJECT)
    state = json.loads(canonical_json(merge(old, [], subject=SUBJECT)))  # as stored, re-read
    grown = extend_state(state, new, *_answers(old))
    assert grown is not None
    assert canonical_json(grown) == canonical_json(expected)


@settings(max_examples=40, deadline=None)
@given(events_strategy)
def test_one_event_at_a_time_gives_the_same_bytes(events: list[dict]) -> None:
    state = merge([], [], subject=SUBJECT)
    for i, event in enumerate(events):
        state = extend_state(state, [event], *_answers(events[:i]))
        assert state is not None
    assert canonical_json(state) == canonical_json(merge(events, [], subject=SUBJECT))


def test_a_record_event_is_left_to_the_full_merge() -> None:
    state = merge([], [], subject=SUBJECT)
    registry = KEYS[0]
    unsigned = build_event(
        target="alias",
        subject=SUBJECT,
        created_at=TIMES[0],
        seq=1,
        prev=None,
        signer=signer_info(registry, signer_id="r", signer_type="pith_registry"),
        payload={"alias_kind": "arxiv", "alias_value": "2601.00001"},
    )
    alias = sign_event(unsigned, registry)
    assert extend_state(state, [alias], *_answers([])) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.data())
def test_sealed_bytes_are_the_canonical_json_of_the_state(events: list[dict], data) -> None:  # type: ignore[no-untyped-def]
    split = data.draw(st.integers(0, len(events)))
    old, new = events[:split], events[split:]
    merged, raw = merge_sealed(events, [], subject=SUBJECT)
    assert raw == canonical_json(merged) == canonical_json(merge(events, [], subject=SUBJECT))
    state = json.loads(canonical_json(merge(old, [], subject=SUBJECT)))
    before = canonical_json(state)
    sealed = extend_state_sealed(state, new, *_answers(old))
    assert sealed is not None
    assert sealed[1] == canonical_json(sealed[0]) == raw
    assert canonical_json(state) == before  # the old state is left as it was: growable again


def test_seal_finds_the_top_level_key_when_a_payload_names_state_type() -> None:
    """The hash is spliced before the last `"state_type"` key: a payload holding that key (or
    the same text inside a string) earlier in the bytes does not move it."""
    event = _event(0, 1, "timestamp_anchor", TIMES[0], 0)
    unsigned = {k: v for k, v in event.items() if k not in ("event_id", "signature_b64")}
    unsigned["payload"] = {"state_type": "x", "note": ',"state_type":"y"'}
    state = merge([sign_event(unsigned, KEYS[0])], [], subject=SUBJECT)
    stale = dict(state, state_sha256="0" * 64)
    assert seal(stale) == canonical_json(state)
    assert stale["state_sha256"] == state["state_sha256"]
