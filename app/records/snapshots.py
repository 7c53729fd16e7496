"""The paper details and graph snapshot this registry publishes with a record (the public
registry's shapes and section hashes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pith_core.canonical import canonical_sha256
from pith_core.receipt import BUILDER_VERSION

ABSTRACT_EXCERPT_CHARS = 600


def paper_details(
    *,
    title: str,
    authors_text: str,
    abstract: str,
    headline: str,
    primary_cat: str,
    cross_cats: Iterable[str],
    license: str,
    submitted_at: str,
) -> dict[str, Any]:
    return {
        "title": " ".join(title.split()),
        "license": license,
        "headline": headline,
        "cross_cats": sorted(set(cross_cats) - {primary_cat}),
        "primary_cat": primary_cat,
        "authors_text": authors_text,
        "submitted_at": submitted_at,
        "abstract_excerpt": " ".join(abstract.split())[:ABSTRACT_EXCERPT_CHARS],
    }


def section_sha256(payload: Any) -> str:
    """A graph section's `snapshot_sha256` as the public registry computes it: SHA-256 of the
    canonical JSON of `{"payload": <the section's items>}` (its empty sections hash to
    258153158e38…4fd4f57, an empty integrity section to c28c3603…a296938)."""
    return canonical_sha256({"payload": payload})


def graph_snapshot(
    paper: Mapping[str, Any],
    source: Mapping[str, Any],
    *,
    claims: list[dict[str, Any]] | None = None,
    verdict: Mapping[str, str] | None = None,
    references: list[dict[str, Any]] | None = None,
    references_resolved: int = 0,
    internal_anchors: int = 0,
    formal_links: int = 0,
) -> dict[str, Any]:
    """The public registry's graph snapshot. Counts a page states (resolved references, Pith
    anchors, machine-checked formal links) are kept as stated; the items behind them, where a
    page does not list them, are not invented (their sections hash what is listed)."""
    claims = claims or []
    references = references or []
    verdict = verdict or {}
    detectors: list[Any] = []
    findings: list[Any] = []
    return {
        "author_claims": {"count": 0, "strong_count": 0, "snapshot_sha256": section_sha256([])},
        "builder_version": BUILDER_VERSION,
        "claims": {
            "count": len(claims),
            "items": claims,
            "snapshot_sha256": section_sha256(claims),
        },
        "formal_canon": {"evidence_count": formal_links, "snapshot_sha256": section_sha256([])},
        "integrity": {
            "available": False,
            "clean": None,
            "detectors_run": detectors,
            "endpoint": None,
            "findings": findings,
            "summary": {"advisory": 0, "by_detector": {}, "critical": 0, "informational": 0},
            "snapshot_sha256": section_sha256({"detectors": detectors, "findings": findings}),
        },
        "paper": dict(paper),
        "references": {
            "count": len(references),
            "internal_anchors": internal_anchors,
            "resolved_work": references_resolved,
            "sample": references[:10],
            "snapshot_sha256": section_sha256(references),
        },
        "source": dict(source),
        "verdict": {
            "created_at": None,
            "id": None,
            "model_set": {},
            "one_line_summary": verdict.get("one_line_summary", ""),
            "pipeline_version": None,
            "pith_extraction_headline": verdict.get("pith_extraction_headline", ""),
            "strongest_claim": verdict.get("strongest_claim", ""),
            "weakest_assumption": verdict.get("weakest_assumption", ""),
        },
    }
