"""The canonical record: the content-addressed core of a paper's Pith number.

Built from arXiv metadata; the title and abstract enter only as SHA-256 of their canon (white space
collapsed, stripped, lower-cased, TeX left as it is), so the record is small and stable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RecordError
from .timefmt import is_utc_second

SCHEMA_VERSION = "1.0"
NEW_STYLE_ID = re.compile(r"\d{4}\.\d{4,5}")
OLD_STYLE_ID = re.compile(r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}")
CATEGORY = re.compile(r"[a-z]+(?:-[a-z]+)*(?:\.[A-Za-z]{2,})?")
METADATA_KEYS = frozenset(
    {
        "abstract_canon_sha256",
        "cross_cats_sorted",
        "license",
        "primary_cat",
        "submitted_at",
        "title_canon_sha256",
    }
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


def canon_text(text: str) -> str:
    """White space collapsed to single spaces, stripped, lower-cased; TeX kept (`Erd\\H{o}s`)."""
    return " ".join(text.split()).lower()


def canon_text_sha256(text: str) -> str:
    return hashlib.sha256(canon_text(text).encode("utf-8")).hexdigest()


def is_arxiv_id(value: object) -> bool:
    return isinstance(value, str) and bool(
        NEW_STYLE_ID.fullmatch(value) or OLD_STYLE_ID.fullmatch(value)
    )


@dataclass(frozen=True)
class PaperMetadata:
    """What the registry is told about an arXiv paper (one version of it)."""

    arxiv_id: str
    version: int
    title: str
    abstract: str
    submitted_at: str  # the FIRST version's submission time, UTC, YYYY-MM-DDTHH:MM:SSZ
    primary_cat: str
    cross_cats: tuple[str, ...] = ()
    license: str = ""
    authors: tuple[str, ...] = field(default=())


def canonical_record(meta: PaperMetadata) -> dict[str, Any]:
    """The canonical record of `meta`, checked; raises RecordError naming the bad field."""
    if not is_arxiv_id(meta.arxiv_id):
        raise RecordError(f"arxiv_id {meta.arxiv_id!r} is not an arXiv identifier")
    if type(meta.version) is not int or meta.version < 1:
        raise RecordError(f"version {meta.version!r} must be a positive integer")
    if not canon_text(meta.title):
        raise RecordError("title is empty")
    if not canon_text(meta.abstract):
        raise RecordError("abstract is empty")
    if not is_utc_second(meta.submitted_at):
        raise RecordError(
            f"submitted_at {meta.submitted_at!r} is not UTC time as YYYY-MM-DDTHH:MM:SSZ"
        )
    for cat in (meta.primary_cat, *meta.cross_cats):
        if not isinstance(cat, str) or not CATEGORY.fullmatch(cat):
            raise RecordError(f"category {cat!r} is not an arXiv category")
    if not isinstance(meta.license, str):
        raise RecordError("license must be a string (empty when the paper has none)")
    return {
        "metadata": {
            "abstract_canon_sha256": canon_text_sha256(meta.abstract),
            "cross_cats_sorted": sorted(set(meta.cross_cats) - {meta.primary_cat}),
            "license": meta.license,
            "primary_cat": meta.primary_cat,
            "submitted_at": meta.submitted_at,
            "title_canon_sha256": canon_text_sha256(meta.title),
        },
        "schema_version": SCHEMA_VERSION,
        "source": {"id": meta.arxiv_id, "kind": "arxiv", "version": meta.version},
    }


def validate_canonical_record(record: object) -> dict[str, Any]:
    """Check a canonical record received from elsewhere; return it or raise RecordError."""
    if not isinstance(record, Mapping):
        raise RecordError("canonical record must be an object")
    if set(record) != {"metadata", "schema_version", "source"}:
        raise RecordError(
            "canonical record must hold exactly metadata, schema_version and source; "
            f"it holds {sorted(record)}"
        )
    if record["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"schema_version {record['schema_version']!r} is not {SCHEMA_VERSION!r}")
    source, meta = record["source"], record["metadata"]
    if not isinstance(source, Mapping) or set(source) != {"id", "kind", "version"}:
        raise RecordError("source must hold exactly id, kind and version")
    if source["kind"] != "arxiv" or not is_arxiv_id(source["id"]):
        raise RecordError(f"source {dict(source)!r} is not an arXiv source")
    if type(source["version"]) is not int or source["version"] < 1:
        raise RecordError("source.version must be a positive integer")
    if not isinstance(meta, Mapping) or set(meta) != METADATA_KEYS:
        raise RecordError(f"metadata must hold exactly {sorted(METADATA_KEYS)}")
    for key in ("abstract_canon_sha256", "title_canon_sha256"):
        if not isinstance(meta[key], str) or not _HEX64.fullmatch(meta[key]):
            raise RecordError(f"metadata.{key} must be 64 lower-case hex digits")
    if not is_utc_second(meta["submitted_at"]):
        raise RecordError("metadata.submitted_at is not UTC time as YYYY-MM-DDTHH:MM:SSZ")
    cats = meta["cross_cats_sorted"]
    if not isinstance(cats, list) or cats != sorted(set(cats)) or meta["primary_cat"] in cats:
        raise RecordError(
            "metadata.cross_cats_sorted must be sorted, without duplicates or the primary category"
        )
    if not isinstance(meta["license"], str) or not isinstance(meta["primary_cat"], str):
        raise RecordError("metadata.license and metadata.primary_cat must be strings")
    return dict(record)
