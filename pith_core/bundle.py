"""Bundles: a canonical record, its receipt and every signed event, for mirrors.

A mirror that holds a bundle and pins the registry's key recomputes the same state with `merge`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .canonical import canonical_sha256
from .number import pith_number

BUNDLE_TYPE = "pith_graph_bundle"
BUNDLE_VERSION = "1.0"


def build_bundle(
    record: dict[str, Any],
    receipt: Mapping[str, Any] | None,
    events: Iterable[Mapping[str, Any]],
    state_sha256: str | None = None,
) -> dict[str, Any]:
    """The bundle of one record; events sorted by id so equal sets give equal bundles."""
    return {
        "bundle_type": BUNDLE_TYPE,
        "bundle_version": BUNDLE_VERSION,
        "pith_number": pith_number(record),
        "canonical_sha256": canonical_sha256(record),
        "canonical_record": record,
        "receipt": dict(receipt) if receipt is not None else None,
        "events": sorted((dict(e) for e in events), key=lambda e: str(e.get("event_id"))),
        "state_sha256": state_sha256,
    }
