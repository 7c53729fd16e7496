"""A merged state grown by new events, without merging everything again.

`pith_core.merge` stays the specification: `extend_state(merge(S), new)` gives the bytes of
`merge(S ∪ new)` (property-tested against it on random event sets). The caller vouches that
every new event is valid under the registry keys of the state (a store checks events on the way
in and keeps only valid ones) and answers what a state does not hold about its applied events
(their seq, their created_at when a record or alias event has no entry), a few at a time.

What changes the record itself (a `record` or `alias` event, or an equivocation that would set
one aside) is left to the full merge: `extend_state` returns None and the caller merges.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .merge import STATE_LISTS, _entry, seal

Slot = tuple[str, int]
_RECORD_TARGETS = frozenset({"record", "alias"})


def _order(entry: Mapping[str, Any]) -> tuple[str, str]:
    return entry["created_at"], entry["event_id"]


def _own_containers(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of `state` with its own top-level object, `current`, lists and equivocation
    groups (what growing changes); the entries in them are shared. Pointer copies only."""
    current = dict(state["current"])
    for name in STATE_LISTS.values():
        current[name] = list(current[name])
    groups = [
        {**g, "event_ids": list(g["event_ids"]), "events": list(g["events"])}
        for g in state["equivocations"]
    ]
    return {
        **state,
        "current": current,
        "applied_event_ids": list(state["applied_event_ids"]),
        "equivocations": groups,
    }


def extend_state(
    state: dict[str, Any],
    new_events: Iterable[dict[str, Any]],
    created_at_of: Callable[[str], str],
    holder_of: Callable[[Slot], str | None],
    event_of: Callable[[str], dict[str, Any]],
) -> dict[str, Any] | None:
    """`state` with `new_events` applied (a new state: `state` is left as it was), or None when
    only a full merge can say (see `extend_state_sealed`, which also returns its bytes)."""
    grown = extend_state_sealed(state, new_events, created_at_of, holder_of, event_of)
    return None if grown is None else grown[0]


def extend_state_sealed(
    state: dict[str, Any],
    new_events: Iterable[dict[str, Any]],
    created_at_of: Callable[[str], str],
    holder_of: Callable[[Slot], str | None],
    event_of: Callable[[str], dict[str, Any]],
) -> tuple[dict[str, Any], bytes] | None:
    """`state` with `new_events` applied and its canonical bytes (encoded once, with its new
    `state_sha256`); None when only a full merge can say. `state` is left as it was: the new
    state shares its entries (never changed) and owns the lists that changed, so a caller may
    keep a parsed state and grow it again and again.

    What a state does not hold, the caller answers: `created_at_of(event_id)` of an applied
    event; `holder_of((signer fingerprint, seq))`, the id of an event of the state in that slot
    (None when there is none); `event_of(event_id)`, an event of the state in full (needed when
    a new event equivocates with it). Each is asked about a few events, never all of them."""
    state = _own_containers(state)
    applied: list[str] = state["applied_event_ids"]
    applied_set = set(applied)
    groups = {(g["signer_fingerprint"], g["seq"]): g for g in state["equivocations"]}
    equivocating = {eid for g in state["equivocations"] for eid in g["event_ids"]}
    by_slot: dict[Slot, str | None] = {}  # slots this call changed
    fresh: dict[str, dict[str, Any]] = {}  # the new events applied here

    def key(eid: str) -> tuple[str, str]:
        return (fresh[eid]["created_at"] if eid in fresh else created_at_of(eid)), eid

    current = state["current"]
    for event in sorted(new_events, key=_order):
        eid = event["event_id"]
        if eid in equivocating:
            group = groups[(event["signer"]["public_key_fingerprint"], event["seq"])]
            for i, kept in enumerate(group["events"]):
                if kept["event_id"] == eid and event["signature_b64"] < kept["signature_b64"]:
                    group["events"][i] = event
            continue
        if eid in applied_set:
            continue
        if event["target"] in _RECORD_TARGETS:
            return None
        slot: Slot = (event["signer"]["public_key_fingerprint"], event["seq"])
        state["event_count"] += 1
        state["valid_event_count"] += 1
        equivocating.add(eid)
        if slot in groups:
            group = groups[slot]
            bisect.insort(group["events"], event, key=lambda e: e["event_id"])
            group["event_ids"] = [e["event_id"] for e in group["events"]]
            continue
        other = by_slot[slot] if slot in by_slot else holder_of(slot)
        if other is None or other not in applied_set:
            equivocating.discard(eid)
            applied_set.add(eid)
            fresh[eid] = event
            bisect.insort(applied, eid, key=key)
            bisect.insort(current[STATE_LISTS[event["target"]]], _entry(event), key=_order)
            by_slot[slot] = eid
            continue
        kept = fresh[other] if other in fresh else event_of(other)
        if kept["target"] in _RECORD_TARGETS:
            return None
        # two events of one signer in one slot: both set aside, with the proof
        by_slot[slot] = None
        applied.remove(other)
        applied_set.discard(other)
        entries = current[STATE_LISTS[kept["target"]]]
        entries[:] = [e for e in entries if e["event_id"] != other]
        equivocating.add(other)
        pair = sorted([kept, event], key=lambda e: e["event_id"])
        group = {
            "signer_fingerprint": slot[0],
            "subject_pith_number": state["pith_number"],
            "seq": slot[1],
            "event_ids": [e["event_id"] for e in pair],
            "events": pair,
        }
        groups[slot] = group
        bisect.insort(
            state["equivocations"],
            group,
            key=lambda g: (g["signer_fingerprint"], g["seq"]),
        )
        state["equivocation_count"] += 1
    return state, seal(state)
