"""Content negotiation of `/pith/{id}`: the page for people, the record JSON for agents."""

from __future__ import annotations

import re

HTML = "text/html; charset=utf-8"
PAGE_PATH = re.compile(r"/pith/[^/]+")
_JSON_TYPES = ("application/ld+json", "application/json")


def wants_json(accept: str) -> str | None:
    """The JSON media type an Accept header asks for, or None when it wants the page.

    JSON-LD or JSON wins unless HTML is listed before it (as browsers list it)."""
    accept = accept.lower()
    html_at = accept.find("text/html")
    found = sorted((at, m) for m in _JSON_TYPES if (at := accept.find(m)) >= 0)
    if not found or 0 <= html_at < found[0][0]:
        return None
    return found[0][1]


def variant(path: str, accept: str) -> str:
    """Which representation of `path` a request gets ("" where there is only one)."""
    if PAGE_PATH.fullmatch(path):
        return wants_json(accept) or "text/html"
    return ""
