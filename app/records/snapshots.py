"""The paper details and graph snapshot this registry publishes with a record (the public
registry's shapes; each section's `snapshot_sha256` is the canonical hash of the section
without it)."""

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


def _sealed(section: dict[str, Any]) -> dict[str, Any]:
    section["snapshot_sha256"] = canonical_sha256(section)
    return section


def graph_snapshot(
    paper: Mapping[str, Any],
    source: Mapping[str, Any],
    *,
    claims: list[dict[str, Any]] | None = None,
    verdict: Mapping[str, str] | None = None,
    references: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    claims = claims or []
    references = references or []
    verdict = verdict or {}
    return {
        "author_claims": _sealed({"count": 0, "strong_count": 0}),
        "builder_version": BUILDER_VERSION,
        "claims": _sealed({"count": len(claims), "items": claims}),
        "formal_canon": _sealed({"evidence_count": 0}),
        "integrity": _sealed(
            {
                "available": False,
                "clean": None,
                "detectors_run": [],
                "endpoint": None,
                "findings": [],
                "summary": {"advisory": 0, "by_detector": {}, "critical": 0, "informational": 0},
            }
        ),
        "paper": dict(paper),
        "references": _sealed(
            {
                "count": len(references),
                "internal_anchors": 0,
                "resolved_work": 0,
                "sample": references[:10],
            }
        ),
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
