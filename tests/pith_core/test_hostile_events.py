"""Hostile input never crashes the protocol: any JSON value in any field of an event (or the
signer, or the event itself) is refused by `verify_event` with an EventError naming a reason, and
the merge lists it as invalid. Regression cases from issue 14 first, then a fuzz corpus."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from pith_core.canonical import parse_json
from pith_core.errors import CanonicalError, EventError
from pith_core.events import EVENT_FIELDS, SIGNER_FIELDS, build_event, sign_event, signer_info
from pith_core.keys import KeyPair
from pith_core.merge import merge

SUBJECT = "pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF"
KEY = KeyPair(SigningKey(b"\x07" * 32), "k")
VALID = sign_event(
    build_event(
        target="replication",
        subject=SUBJECT,
        created_at="2026-11-23T05:00:00Z",
        seq=1,
        prev=None,
        signer=signer_info(KEY, signer_id="w", signer_type="t"),
        payload={"claim_id": "c", "verdict": "replicated"},
    ),
    KEY,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _refused(event: Any) -> str:
    from pith_core.events import verify_event

    with pytest.raises(EventError) as info:
        verify_event(event, frozenset())
    state = merge([event, VALID], [], subject=SUBJECT)
    assert state["valid_event_count"] == 1 and state["invalid_event_count"] == 1
    return info.value.reason


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("target",), ["replication"]),  # issue 14: a list as target
        (("event_type",), {"a": 1}),
        (("signer", "public_key_b64"), ["not", "a", "string"]),  # issue 14
        (("signer", "public_key_b64"), {"k": 1}),
        (("signer", "public_key_fingerprint"), ["x"]),
        (("subject_pith_number",), ["pith:2026:X"]),
        (("created_at",), {"t": 1}),
        (("seq",), 2**80),
        (("prev",), ["sha256:" + "0" * 64]),
        (("signature_b64",), ["x"]),
        (("event_id",), {"x": 1}),
        (("payload",), [1, 2]),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_not_crashed(
    path: tuple[str, ...], value: Any
) -> None:
    event = copy.deepcopy(VALID)
    holder = event
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    assert _refused(event)


def test_a_4301_digit_integer_is_malformed_json() -> None:
    with pytest.raises(CanonicalError):
        parse_json('{"seq": ' + "9" * 4301 + "}")


@settings(max_examples=300, deadline=None)
@given(st.data(), json_values)
def test_any_value_in_any_field_is_refused_or_valid(data: Any, value: Any) -> None:
    from pith_core.events import verify_event

    event = copy.deepcopy(VALID)
    where = data.draw(
        st.sampled_from(
            sorted(EVENT_FIELDS) + [f"signer.{k}" for k in sorted(SIGNER_FIELDS)] + ["extra"]
        )
    )
    if where.startswith("signer."):
        event["signer"][where[7:]] = value
    else:
        event[where] = value
    try:
        verify_event(event, frozenset())
    except EventError as e:
        assert e.reason
    merge([event, VALID], [], subject=SUBJECT)  # never raises


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_value_as_an_event_is_refused(value: Any) -> None:
    _refused(value)
