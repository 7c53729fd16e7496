"""Search: a query is an identifier (arXiv id, DOI, Pith number) answered by its record, or
words matched in titles, authors and abstracts; results come a page at a time."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from pith_core.number import short_pith_number

from ..core.problems import Problem
from ..records.service import links, resolve, resolve_alias
from ..storage.models import Record
from .repository import SearchRepository

MAX_QUERY_CHARS = 300
MAX_WORDS = 12
MAX_WORD_CHARS = 64
DOI = re.compile(r"(?:https?://(?:dx\.)?doi\.org/|doi:)?(10\.\d{4,9}/\S+)", re.IGNORECASE)
ARXIV = re.compile(
    r"(?:arxiv:|https?://arxiv\.org/abs/)?((?:\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?)",
    re.IGNORECASE,
)
PITH = re.compile(r"pith:\S+|[A-Z2-7]{8,26}")


@dataclass(frozen=True)
class SearchPage:
    query: str
    mode: str  # "identifier" | "words" | "all"
    page: int
    per_page: int
    total: int
    records: list[Record]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def words_of(query: str) -> list[str]:
    """The words a query searches for (letters and digits, bounded)."""
    return [w[:MAX_WORD_CHARS] for w in re.findall(r"\w+", query)][:MAX_WORDS]


def _identified(session: Session, query: str) -> Record | None:
    """The record an identifier-shaped query names, if it is here."""
    q = query.strip()
    attempts: list[tuple[str, str]] = []
    if m := DOI.fullmatch(q):
        attempts.append(("doi", m.group(1)))
    if m := ARXIV.fullmatch(q):
        attempts.append(("arxiv", m.group(1)))
    if PITH.fullmatch(q):
        attempts.append(("pith", q))
    for kind, value in attempts:
        try:
            return resolve_alias(session, kind, value) if kind != "pith" else resolve(session, q)
        except Problem:
            continue
    return None


def search(session: Session, query: str, page: int, per_page: int) -> SearchPage:
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise Problem(
            400, "query_too_long", f"queries are limited to {MAX_QUERY_CHARS} characters", field="q"
        )
    repo = SearchRepository(session)
    offset = (page - 1) * per_page
    if not query:
        total, records = repo.newest(per_page, offset)
        return SearchPage(query, "all", page, per_page, total, records)
    found = _identified(session, query)
    if found is not None:
        return SearchPage(query, "identifier", page, per_page, 1, [found] if page == 1 else [])
    total, records = repo.matching(words_of(query), per_page, offset)
    return SearchPage(query, "words", page, per_page, total, records)


def record_item(base_url: str, record: Record) -> dict[str, Any]:
    """One search result: enough to show and to follow."""
    paper = json.loads(record.paper)
    return {
        "pith_number": record.pith_number,
        "short_pith_number": short_pith_number(record.pith_number),
        "title": paper.get("title", ""),
        "authors_text": paper.get("authors_text", ""),
        "submitted_at": paper.get("submitted_at", ""),
        "primary_cat": paper.get("primary_cat", ""),
        "source": {
            "kind": record.source_kind,
            "id": record.source_id,
            "version": record.source_version,
        },
        "canonical_sha256": record.canonical_sha256,
        "links": links(base_url, record),
    }


def page_url(base: str, query: str, page: int, per_page: int, default_per_page: int) -> str:
    params: dict[str, str | int] = {}
    if query:
        params["q"] = query
    if page != 1:
        params["page"] = page
    if per_page != default_per_page:
        params["per_page"] = per_page
    return base + ("?" + urlencode(params) if params else "")


def search_document(
    base_url: str, path: str, result: SearchPage, default_per_page: int
) -> dict[str, Any]:
    """The API's answer: the page of results and the links to its neighbours."""

    def url(page: int) -> str:
        return page_url(base_url + path, result.query, page, result.per_page, default_per_page)

    return {
        "query": result.query,
        "mode": result.mode,
        "total": result.total,
        "page": result.page,
        "per_page": result.per_page,
        "pages": result.pages,
        "next": url(result.page + 1) if result.page < result.pages else None,
        "prev": url(result.page - 1) if result.page > 1 else None,
        "results": [record_item(base_url, r) for r in result.records],
    }


INDEX_PER_PAGE = 50


def index_page_context(base_url: str, session: Session, query: str, page: int) -> dict[str, Any]:
    """What the index page shows: the search form, one page of records, the pager."""
    result = search(session, query, page, INDEX_PER_PAGE)

    def url(n: int) -> str:
        return page_url(base_url + "/", result.query, n, INDEX_PER_PAGE, INDEX_PER_PAGE)

    return {
        "query": result.query,
        "mode": result.mode,
        "total": result.total,
        "all_records": result.total if result.mode == "all" else SearchRepository(session).count(),
        "page": result.page,
        "pages": result.pages,
        "first_shown": (result.page - 1) * INDEX_PER_PAGE + 1 if result.records else 0,
        "last_shown": (result.page - 1) * INDEX_PER_PAGE + len(result.records),
        "next_url": url(result.page + 1) if result.page < result.pages else None,
        "prev_url": url(result.page - 1) if result.page > 1 else None,
        "records": [
            {**record_item(base_url, r), "suffix": r.suffix, "short": f"pith:{r.suffix[:8]}"}
            for r in result.records
        ],
    }
