"""Bundles: a canonical record, its receipt and every signed event, for mirrors.

The shape is the public registry's (`pith_open_graph_bundle`, as its `/pith/{id}/bundle.json`
serves it), with the receipt and the registry's `state_sha256` added so a mirror can check both.
A mirror that holds a bundle and pins the registry's key recomputes the same state with `merge`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .canonical import canonical_sha256
from .number import pith_number, short_pith_number

BUNDLE_TYPE = "pith_open_graph_bundle"
BUNDLE_VERSION = "1.0"


def build_bundle(
    record: dict[str, Any],
    receipt: Mapping[str, Any] | None,
    events: Iterable[Mapping[str, Any]],
    *,
    source_aliases: Sequence[Mapping[str, Any]] = (),
    state_sha256: str | None = None,
) -> dict[str, Any]:
    """The bundle of one record; events sorted by id so equal sets give equal bundles."""
    number = pith_number(record)
    return {
        "bundle_type": BUNDLE_TYPE,
        "bundle_version": BUNDLE_VERSION,
        "pith_number": number,
        "short_pith_number": short_pith_number(number),
        "canonical_record": record,
        "canonical_sha256": canonical_sha256(record),
        "source": dict(record["source"]),
        "source_aliases": [dict(a) for a in source_aliases],
        "events": sorted((dict(e) for e in events), key=lambda e: str(e.get("event_id"))),
        "receipt": dict(receipt) if receipt is not None else None,
        "state_sha256": state_sha256,
    }
