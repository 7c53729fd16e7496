"""What people put on their own pages: the SVG badge, BibTeX, CSL-JSON and the page's
citation_* / OpenGraph meta tags."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET

from fastapi.testclient import TestClient

from .helpers import BASE_URL, assert_problem, new_key, seed_json, seed_number, signed_event

SVG = "{http://www.w3.org/2000/svg}"
FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]


def _badge_text(client: TestClient, suffix: str = SUFFIX) -> tuple[str, str]:
    r = client.get(f"/pith/{suffix}/badge.svg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    svg = ET.fromstring(r.content)
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    fill = [x.get("fill") for x in svg.iter(f"{SVG}rect")][1]
    return " | ".join(texts), fill


def test_badge_is_svg_naming_the_record_and_what_holds(seeded: TestClient) -> None:
    text, fill = _badge_text(seeded)
    assert text.startswith(f"pith:{SUFFIX[:8]} | ")
    assert "signed" in text and "replicated" not in text
    assert re.fullmatch(r"#[0-9a-f]{3,6}", fill)


def test_badge_changes_when_a_replication_is_listed(seeded: TestClient) -> None:
    before, _ = _badge_text(seeded)
    event = signed_event(new_key(), FORGE, payload={"claim_id": "x", "verdict": "replicated"})
    assert seeded.post(f"/pith/{SUFFIX}/action/replication_record", json=event).status_code == 201
    after, _ = _badge_text(seeded)
    assert after != before
    # a self-signed record is listed as such, never as a replication the registry vouches for
    assert "self-reported" in after or "replicat" in after


def test_badge_of_unknown_record_is_404(seeded: TestClient) -> None:
    assert_problem(seeded.get("/pith/AAAAAAAAAAAAAAAAAAAAAAAAAA/badge.svg"), 404)


def test_bibtex_entry(seeded: TestClient) -> None:
    r = seeded.get(f"/pith/{SUFFIX}/citation.bib")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-bibtex")
    text = r.text
    paper = seed_json("000")["paper"]
    source = seed_json("000")["source"]["id"]
    assert text.startswith("@misc{pith" + SUFFIX[:8] + ",")
    assert text.count("{") == text.count("}")
    assert f"title = {{{{{paper['title']}}}}}" in text
    authors = [a.strip() for a in paper["authors_text"].split(",")]
    assert f"author = {{{' and '.join(authors)}}}" in text
    assert f"eprint = {{{source}}}" in text and "archivePrefix = {arXiv}" in text
    assert f"doi = {{10.48550/arXiv.{source}}}" in text
    assert FORGE in text and f"{BASE_URL}/pith/{SUFFIX}" in text


def test_bibtex_escapes_what_would_break_it() -> None:
    from app.exports.citation import bibtex

    doc = {
        "pith_number": "pith:2026:ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "canonical_sha256": "0" * 64,
        "source": {"id": "2601.00001", "version": 1},
        "links": {"html": "http://x/pith/ABCDEFGH"},
        "paper": {
            "title": "Cats & Dogs: 100% of {unbalanced",
            "authors_text": "A. One, B. Two and C. Three",
            "submitted_at": "2026-01-02T00:00:00Z",
        },
    }
    text = bibtex(doc)
    assert r"Cats \& Dogs: 100\% of unbalanced" in text
    assert "author = {A. One and B. Two and C. Three}" in text
    assert text.count("{") == text.count("}")


def test_csl_json(seeded: TestClient) -> None:
    r = seeded.get(f"/pith/{SUFFIX}/citation.json")
    assert r.headers["content-type"].startswith("application/vnd.citationstyles.csl+json")
    (item,) = r.json()
    paper = seed_json("000")["paper"]
    assert item["id"] == FORGE and item["type"] == "article"
    assert item["title"] == paper["title"]
    first = paper["authors_text"].split(",")[0].split()
    assert item["author"][0] == {"family": first[-1], "given": " ".join(first[:-1])}
    year, month, day = (int(x) for x in paper["submitted_at"][:10].split("-"))
    assert item["issued"] == {"date-parts": [[year, month, day]]}
    assert item["DOI"].lower() == f"10.48550/arxiv.{seed_json('000')['source']['id']}"


def test_page_has_citation_and_opengraph_meta(seeded: TestClient) -> None:
    page = seeded.get(f"/pith/{SUFFIX}").text
    meta = {}
    for name, content in re.findall(r'<meta (?:name|property)="([^"]+)" content="([^"]*)"', page):
        meta.setdefault(name, []).append(html.unescape(content))
    paper = seed_json("000")["paper"]
    assert meta["citation_title"] == [paper["title"]]
    assert meta["citation_author"] == [a.strip() for a in paper["authors_text"].split(",")]
    assert meta["citation_publication_date"] == [paper["submitted_at"][:10].replace("-", "/")]
    assert meta["og:title"] == [paper["title"]]
    assert meta["og:url"] == [f"{BASE_URL}/pith/{SUFFIX}"]
    ld = json.loads(re.search(r'<script type="application/ld\+json">(.*?)</script>', page).group(1))
    assert ld["name"] == paper["title"]  # the JSON-LD stays beside them
    assert f"/pith/{SUFFIX}/badge.svg" in page and f"/pith/{SUFFIX}/citation.bib" in page


def test_long_abstract_ends_on_a_word_with_a_link_on(seeded: TestClient) -> None:
    paper = seed_json("000")["paper"]
    page = seeded.get(f"/pith/{SUFFIX}").text
    shown = html.unescape(re.search(r'<p id="abstract">(.*?)<a ', page, re.S).group(1)).strip()
    if len(paper["abstract_excerpt"]) >= 600:
        assert shown.endswith("…")
        words = paper["abstract_excerpt"].split()
        assert shown[:-1].split()[-1] in words  # a whole word, not a piece of one
        assert "read the whole abstract on arXiv" in page
