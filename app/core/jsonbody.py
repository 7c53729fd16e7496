"""JSON bodies of the API's answers: compact UTF-8, one function for every route.

orjson writes them (several times faster than the standard library on the large documents a
batch answer or a listing holds); what it refuses (an integer past 64 bits) falls back to the
standard library, which writes the same JSON value.
"""

from __future__ import annotations

import json

import orjson


def dumps(doc: object) -> bytes:
    try:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
