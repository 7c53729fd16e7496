"""Finding papers: full-text search (FTS5 on SQLite, tsvector on PostgreSQL) in the API and on
the index page, paging, the Atom feed, sitemap.xml and robots.txt."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fastapi.testclient import TestClient

from .helpers import ADMIN_TOKEN, BASE_URL, assert_problem, seed_json, seed_number

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
FORGE = seed_number("000")


def _numbers(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [r["pith_number"] for r in response.json()["results"]]


def _paper(i: int, word: str) -> dict[str, object]:
    return {
        "arxiv_id": f"2611.{10000 + i}",
        "version": 1,
        "title": f"On the {word} number {i}",
        "abstract": f"Paper {i} about {word}s and nothing else.",
        "authors": [f"Author{i} Surname", "Grace Hopper"],
        "license": "",
        "primary_cat": "cs.LG",
        "cross_cats": [],
        "submitted_at": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
    }


def test_search_by_title_words_author_ids(seeded: TestClient) -> None:
    paper = seed_json("000")["paper"]
    # a title word, a word of the abstract, an author's family name (all from the seed file)
    title_word = paper["title"].split(":")[0]  # "FORGE"
    author = paper["authors_text"].split(",")[0].split()[-1]
    assert FORGE in _numbers(seeded.get("/api/search", params={"q": title_word}))
    assert FORGE in _numbers(seeded.get("/api/search", params={"q": author}))
    assert FORGE in _numbers(seeded.get("/api/search", params={"q": f"{title_word} {author}"}))
    source = seed_json("000")["source"]["id"]
    for q in (source, f"arXiv:{source}", f"10.48550/arXiv.{source}", FORGE, FORGE[10:18]):
        r = seeded.get("/api/search", params={"q": q})
        assert _numbers(r) == [FORGE], q
        assert r.json()["mode"] == "identifier"
    assert _numbers(seeded.get("/api/search", params={"q": "zzqx nonexistentword"})) == []


def test_stems_and_prefixes_match(seeded: TestClient) -> None:
    # "Memory-Efficient" is in FORGE's title: a stem variant and a prefix both find it
    assert FORGE in _numbers(seeded.get("/api/search", params={"q": "efficiently memories"}))
    assert FORGE in _numbers(seeded.get("/api/search", params={"q": "Elimin"}))


def test_empty_query_lists_everything_newest_first(seeded: TestClient) -> None:
    body = seeded.get("/api/search").json()
    assert body["mode"] == "all" and body["total"] == 5 and len(body["results"]) == 5
    listed = seeded.get("/api/records").json()["records"]
    assert [r["pith_number"] for r in body["results"]] == [r["pith_number"] for r in listed]


def test_paging_covers_every_match_once(client: TestClient) -> None:
    for i in range(23):
        assert (
            client.post("/api/records", json=_paper(i, "zebrafish"), headers=ADMIN).status_code
            == 201
        )
    client.post("/api/records", json=_paper(99, "axolotl"), headers=ADMIN)
    seen: list[str] = []
    url: str | None = "/api/search?q=zebrafish&per_page=10"
    pages = 0
    while url:
        body = client.get(url.removeprefix(BASE_URL)).json()
        assert body["total"] == 23 and body["pages"] == 3
        seen += [r["pith_number"] for r in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3 and len(seen) == 23 == len(set(seen))
    last = client.get("/api/search?q=zebrafish&per_page=10&page=3").json()
    assert len(last["results"]) == 3 and last["next"] is None and "page=2" in last["prev"]
    hopper = client.get("/api/search", params={"q": "Hopper", "per_page": 100}).json()
    assert hopper["total"] == 24  # the second author of every paper


def test_bad_search_input_is_a_4xx(seeded: TestClient) -> None:
    assert_problem(seeded.get("/api/search", params={"q": "x" * 301}), 422)
    assert_problem(seeded.get("/api/search", params={"page": 0}), 422)
    assert_problem(seeded.get("/api/search", params={"per_page": 1000}), 422)
    # query syntax of either engine is only text here
    for q in ('"unbalanced', "a OR b NEAR(c)", "x:* & !y", "\\'; DROP TABLE records; --"):
        assert seeded.get("/api/search", params={"q": q}).status_code == 200


def test_index_page_searches_and_pages(client: TestClient) -> None:
    for i in range(55):
        client.post("/api/records", json=_paper(i, "tardigrade"), headers=ADMIN)
    first = client.get("/")
    assert first.status_code == 200
    assert 'name="q"' in first.text and "55 records" in first.text
    assert first.text.count("/pith/") >= 50 and 'rel="next"' in first.text
    second = client.get("/?page=2")
    assert "page 2 of 2" in second.text and 'rel="prev"' in second.text
    found = client.get("/", params={"q": "tardigrade number 7"})
    assert "On the tardigrade number 7<" in found.text
    assert "tardigrade number 8<" not in found.text
    none = client.get("/", params={"q": "unicorn"})
    assert "Nothing here matches" in none.text


def test_atom_feed_lists_new_records_and_events(client: TestClient) -> None:
    client.post("/api/records", json=_paper(1, "narwhal"), headers=ADMIN)
    r = client.get("/feed.atom")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.content)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 2  # the record event and the graph event
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert all("On the narwhal number 1" in t for t in titles)
    assert titles[0].startswith("graph snapshot") and titles[1].startswith("registered")
    link = entries[0].find(f"{ATOM}link").get("href")
    assert client.get(link.removeprefix(BASE_URL)).status_code == 200
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == 2
    self_link = [x for x in feed.findall(f"{ATOM}link") if x.get("rel") == "self"]
    assert self_link[0].get("href") == f"{BASE_URL}/feed.atom"


def test_record_feed_and_unknown_record(seeded: TestClient) -> None:
    suffix = FORGE.rsplit(":", 1)[1]
    feed = ET.fromstring(seeded.get(f"/pith/{suffix}/feed.atom").content)
    entries = feed.findall(f"{ATOM}entry")
    assert entries and all(suffix in e.find(f"{ATOM}link").get("href") for e in entries)
    assert_problem(seeded.get("/pith/AAAAAAAAAAAAAAAAAAAAAAAAAA/feed.atom"), 404)


def test_sitemap_and_robots(seeded: TestClient) -> None:
    tree = ET.fromstring(seeded.get("/sitemap.xml").content)
    locs = [u.findtext(f"{SITEMAP}loc") for u in tree.findall(f"{SITEMAP}url")]
    records = seeded.get("/api/records").json()["records"]
    assert set(locs) == {f"{BASE_URL}/"} | {r["links"]["html"] for r in records}
    robots = seeded.get("/robots.txt").text
    assert f"Sitemap: {BASE_URL}/sitemap.xml" in robots
    assert "Disallow: /api/jobs" in robots
