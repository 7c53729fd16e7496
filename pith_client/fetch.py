"""`pith verify URL` and the other `pith` commands that take a URL: the document's bytes, read
through this client. `pith_core` holds no network code; its CLI finds this function through the
`pith.fetch` entry-point group.

A bundle URL (`…/pith/{id}/bundle.json`, optionally `?log_size=N`) is fetched whole: a record
with more events than one page holds is served in pages, and one page alone cannot have its
merged state checked, so every page is followed (`PithClient.bundle`)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from .client import PithAPIError, PithClient

_BUNDLE_PATH = re.compile(r"^(?P<base>.*)/pith/(?P<id>[^/]+)/bundle\.json$")


class FetchError(ValueError):
    """The URL could not be read (refused, not found, not JSON): the message says which."""


def fetch_document(url: str) -> bytes:
    """The JSON document at `url` as bytes (a paged bundle put back together)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    match = _BUNDLE_PATH.match(parts.path)
    try:
        if match and set(query) <= {"log_size"}:
            base = urlunsplit((parts.scheme, parts.netloc, match["base"], "", ""))
            size = int(query["log_size"]) if "log_size" in query else None
            with PithClient(base) as client:
                return json.dumps(client.bundle(match["id"], log_size=size)).encode()
        accept = {"Accept": "application/json"}
        r = httpx.get(url, follow_redirects=True, timeout=60, headers=accept)
        r.raise_for_status()
        return r.content
    except (httpx.HTTPError, PithAPIError, ValueError) as e:
        raise FetchError(f"cannot read {url}: {e}") from e
