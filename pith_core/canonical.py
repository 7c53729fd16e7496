"""Canonical JSON: the one byte form every hash and signature in Pith is taken over.

`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` as UTF-8, restricted to
a profile on which those bytes equal RFC 8785 (JCS) output, so any language gets the same hash:
strings, integers within ±(2^53−1), booleans, null, lists and objects with ASCII keys. Floats are
refused (they do not canonicalize alike across languages: write metrics as decimal strings).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import CanonicalError

MAX_SAFE_INTEGER = 2**53 - 1

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def encode_with_json(value: Any) -> bytes:
    """The reference encoder: the standard library, exactly as DESIGN §2 writes the rule."""
    return _dumps(value).encode("utf-8")


try:  # orjson writes the same bytes on the profile (tested) about ten times faster
    import orjson

    def _encode(value: Any) -> bytes:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            # orjson stops at 255 levels of nesting; json goes deeper: keep one behaviour
            return encode_with_json(value)

except ImportError:  # pragma: no cover - the pure-Python path
    _encode = encode_with_json


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _has_lone_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def first_violation(value: Any, path: str = "$") -> CanonicalError | None:
    """The first value outside the profile, as an error naming its path (None if there is none).

    A plain walk: the slow path, run only to explain a refusal or on non-ASCII documents.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        t = type(v)
        if t is str:
            if not v.isascii() and _has_lone_surrogate(v):
                return CanonicalError(p, "string holds a lone surrogate (not valid Unicode)")
        elif t is bool or v is None:
            continue
        elif t is int:
            if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                return CanonicalError(p, f"integer {v} is beyond ±(2^53−1)")
        elif t is dict:
            for k, item in v.items():
                if type(k) is not str:
                    return CanonicalError(p, f"object key {k!r} is not a string")
                if not k.isascii():
                    return CanonicalError(p, f"object key {k!r} is not ASCII")
                stack.append((item, _child(p, k)))
        elif t is list:
            stack.extend((item, f"{p}[{i}]") for i, item in reversed(list(enumerate(v))))
        elif t is float:
            return CanonicalError(
                p, f"float {v!r} is not allowed (write numbers as decimal strings or integers)"
            )
        else:
            return CanonicalError(p, f"{t.__name__} is not a JSON value of the profile")
    return None


def in_profile(value: Any) -> bool:
    """True when `value` is inside the profile: the fast walk (no paths) of the hot paths."""
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str:
            if not v.isascii() and _has_lone_surrogate(v):
                return False
        elif t is dict:
            for k, item in v.items():
                if type(k) is not str or not k.isascii():
                    return False
                push(item)
        elif t is list:
            extend(v)
        elif t is int:
            if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                return False
        elif t is not bool and v is not None:
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of `value`; CanonicalError naming the path of a value out of profile."""
    if not in_profile(value):
        raise first_violation(value) or CanonicalError("$", "value is outside the profile")
    try:
        return _encode(value)
    except RecursionError as e:
        raise CanonicalError("$", "value is nested too deeply") from e


def check_canonical(value: Any, path: str = "$") -> None:
    """Raise CanonicalError naming the path of the first value outside the profile."""
    if not in_profile(value):
        raise first_violation(value, path) or CanonicalError(path, "value is outside the profile")


def canonical_json_prechecked(value: Any) -> bytes:
    """The canonical bytes of a value already known to be in the profile (a hot-path shortcut).

    Raises UnicodeEncodeError for a lone surrogate, which the profile check would have refused.
    """
    return _encode(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


class _Pairs(list):
    """An object as parsed, before its keys are checked (keeps duplicates visible)."""


def _build(value: Any, path: str) -> Any:

    if type(value) is _Pairs:
        out: dict[str, Any] = {}
        for k, v in value:
            if k in out:
                raise CanonicalError(path, f"duplicate object key {k!r}")
            out[k] = _build(v, _child(path, k))
        return out
    if type(value) is list:
        return [_build(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


class _Duplicate(Exception):
    """A duplicate key seen by the fast parse; the slow parse then names its path."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


def _constant(name: str) -> Any:
    raise CanonicalError("$", f"{name} is not JSON")


_fast_decode = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_constant
).decode
_slow_decode = json.JSONDecoder(object_pairs_hook=_Pairs, parse_constant=_constant).decode


def parse_json(text: str | bytes) -> Any:
    """Parse JSON text, refusing duplicate object keys (with their path) and NaN/Infinity.

    Floats are kept as floats here; canonical_json refuses them with their path if they are to be
    hashed or signed. Errors are CanonicalError (a ValueError).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CanonicalError("$", f"not UTF-8: {e.reason} at byte {e.start}") from e
    try:
        return _fast_decode(text)
    except _Duplicate:
        return _build(_slow_decode(text), "$")  # raises, naming the duplicate's path
    except RecursionError as e:
        raise CanonicalError("$", "JSON is nested too deeply") from e
    except json.JSONDecodeError as e:
        raise CanonicalError("$", f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except ValueError as e:  # an integer past Python's digit limit, and the like
        raise CanonicalError("$", f"not acceptable JSON: {str(e)[:120]}") from e
