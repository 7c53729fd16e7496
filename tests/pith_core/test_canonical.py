"""The canonical JSON profile: its bytes, and one refusal test per rule, each naming the path."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pith_core import CanonicalError, canonical_json, canonical_sha256, parse_json

MAX = 2**53 - 1


def test_bytes_are_sorted_compact_utf8() -> None:
    # Written out by hand from RFC 8785: keys sorted by code point, no spaces, UTF-8 as is.
    value = {"b": [True, None, "é"], "a": 1, "A": {"z": "", "y": -7}}
    assert canonical_json(value) == '{"A":{"y":-7,"z":""},"a":1,"b":[true,null,"é"]}'.encode()


def test_escapes_follow_json() -> None:
    assert canonical_json({"k": 'q"\\\n\u0001'}) == b'{"k":"q\\"\\\\\\n\\u0001"}'


def test_sha256_is_of_the_canonical_bytes() -> None:
    value = {"x": [1, 2, {"y": "z"}]}
    assert canonical_sha256(value) == hashlib.sha256(b'{"x":[1,2,{"y":"z"}]}').hexdigest()


def test_refuses_floats_with_path() -> None:
    with pytest.raises(CanonicalError) as e:
        canonical_json({"payload": {"figures": [1, 2.5]}})
    assert e.value.path == "$.payload.figures[1]"
    assert "float" in str(e.value)


def test_refuses_integral_floats_too() -> None:
    with pytest.raises(CanonicalError, match="float"):
        canonical_json({"a": 1.0})


def test_refuses_nan_object_and_nan_text() -> None:
    with pytest.raises(CanonicalError) as e:
        canonical_json({"m": float("nan")})
    assert e.value.path == "$.m"
    with pytest.raises(CanonicalError, match="NaN"):
        parse_json('{"m": NaN}')


@pytest.mark.parametrize("bad", [MAX + 1, -MAX - 1, 2**64])
def test_refuses_integers_beyond_2_53(bad: int) -> None:
    with pytest.raises(CanonicalError) as e:
        canonical_json({"seq": [bad]})
    assert e.value.path == "$.seq[0]"


@pytest.mark.parametrize("ok", [MAX, -MAX, 0])
def test_accepts_integers_within_2_53(ok: int) -> None:
    assert canonical_json(ok) == str(ok).encode()


def test_refuses_non_ascii_keys() -> None:
    with pytest.raises(CanonicalError) as e:
        canonical_json({"meta": {"clé": 1}})
    assert e.value.path == "$.meta"
    assert "not ASCII" in str(e.value)


def test_refuses_non_string_keys() -> None:
    with pytest.raises(CanonicalError, match="not a string") as e:
        canonical_json({"a": {1: "x"}})
    assert e.value.path == "$.a"


def test_refuses_duplicate_keys_with_path() -> None:
    with pytest.raises(CanonicalError) as e:
        parse_json('{"a": {"list": [{"k": 1, "k": 2}]}}')
    assert e.value.path == "$.a.list[0]"
    assert "duplicate" in str(e.value)


def test_refuses_lone_surrogates_with_path() -> None:
    with pytest.raises(CanonicalError) as e:
        canonical_json({"t": ["ok", "bad\ud800"]})
    assert e.value.path == "$.t[1]"
    # and from JSON text, where a lone \ud800 escape is legal syntax
    with pytest.raises(CanonicalError, match="surrogate"):
        canonical_json(parse_json('{"t": "\\ud800"}'))


def test_refuses_other_python_types() -> None:
    with pytest.raises(CanonicalError, match="tuple"):
        canonical_json({"a": (1, 2)})


def test_paths_quote_keys_that_are_not_identifiers() -> None:
    with pytest.raises(CanonicalError) as e:
        canonical_json({"a b": 0.5})
    assert e.value.path == '$["a b"]'


def test_parse_json_refuses_malformed_text() -> None:
    with pytest.raises(CanonicalError, match="not JSON"):
        parse_json('{"a": ')
    with pytest.raises(CanonicalError, match="not UTF-8"):
        parse_json(b'"\xff"')


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX, max_value=MAX)
    | st.text(st.characters(exclude_categories=("Cs",)))
    | st.sampled_from(["\u2028\u2029", "\x7f", "\x00\x1f\b\f\n\r\t", '/\\"', "\U0001f600"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(max_codepoint=127), max_size=6), children, max_size=4
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_round_trip_and_stability(value: object) -> None:
    raw = canonical_json(value)
    assert parse_json(raw) == value
    assert canonical_json(parse_json(raw)) == raw
    # what a verifier in the shell does (the README recipe) gives the same bytes
    assert (
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == raw
    )


@given(json_values)
def test_the_fast_encoder_writes_the_reference_bytes(value: object) -> None:
    from pith_core.canonical import encode_with_json

    assert canonical_json(value) == encode_with_json(value)


def test_deep_nesting_behaves_the_same_with_either_encoder() -> None:
    from pith_core.canonical import encode_with_json

    deep: object = "x"
    for _ in range(300):  # past orjson's own limit of 255 levels
        deep = [deep]
    assert canonical_json(deep) == encode_with_json(deep)
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CanonicalError, match="nested too deeply"):
        canonical_json(deep)
