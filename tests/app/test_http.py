"""HTTP as clients expect: HEAD, OPTIONS, CORS, compression, Cache-Control, HTML error pages for
browsers, and API docs whose assets this server serves itself."""

from __future__ import annotations

import gzip
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from .helpers import assert_problem

FORGE = "GWT7BTE6QQH6QFVV76TWP23RSF"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    "path", ["/", f"/pith/{FORGE}", f"/pith/{FORGE}.json", f"/pith/{FORGE}/bundle.json"]
)
def test_head_is_the_get_without_its_body(seeded: TestClient, path: str) -> None:
    got = seeded.get(path, headers={"accept-encoding": "identity"})
    head = seeded.head(path, headers={"accept-encoding": "identity"})
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == got.headers["content-type"]


def test_head_of_a_missing_record_is_a_404_without_body(seeded: TestClient) -> None:
    head = seeded.head("/pith/AAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert head.status_code == 404
    assert head.content == b""


def test_options_lists_the_allowed_methods(seeded: TestClient) -> None:
    page = seeded.options(f"/pith/{FORGE}")
    assert page.status_code == 204
    assert page.headers["allow"] == "GET, HEAD, OPTIONS"
    events = seeded.options("/api/events")
    assert {m.strip() for m in events.headers["allow"].split(",")} >= {"GET", "POST", "HEAD"}
    assert_problem(seeded.options("/no/such/path"), 404, "not_found")


def test_cors_lets_other_origins_read_not_write(seeded: TestClient) -> None:
    origin = {"origin": "https://reader.example"}
    got = seeded.get(f"/pith/{FORGE}.json", headers=origin)
    assert got.headers["access-control-allow-origin"] == "*"
    assert "etag" in got.headers["access-control-expose-headers"].lower()
    preflight = seeded.options(
        "/api/records", headers={**origin, "access-control-request-method": "GET"}
    )
    assert preflight.status_code == 200
    assert "GET" in preflight.headers["access-control-allow-methods"]
    write = seeded.options(
        "/api/events", headers={**origin, "access-control-request-method": "POST"}
    )
    assert write.status_code == 400  # the browser will not send the POST


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_large_json_is_compressed(seeded: TestClient, encoding: str) -> None:
    plain = seeded.get(f"/pith/{FORGE}/bundle.json", headers={"accept-encoding": "identity"})
    packed = seeded.get(f"/pith/{FORGE}/bundle.json", headers={"accept-encoding": encoding})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == encoding
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert packed.json() == plain.json()  # httpx decodes both
    assert int(packed.headers["content-length"]) < len(plain.content) / 2


def test_gzip_body_is_real_gzip(seeded: TestClient) -> None:
    with seeded.stream(
        "GET", f"/pith/{FORGE}/bundle.json", headers={"accept-encoding": "gzip"}
    ) as r:
        raw = b"".join(r.iter_raw())
    assert gzip.decompress(raw).startswith(b"{")


def test_small_answers_are_not_compressed(seeded: TestClient) -> None:
    r = seeded.get("/robots.txt", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and len(r.content) < 1024
    assert "content-encoding" not in r.headers


def test_cache_control(seeded: TestClient) -> None:
    assert seeded.get(f"/pith/{FORGE}.json").headers["cache-control"] == "public, no-cache"
    immutable = seeded.get("/static-offline-docs/swagger-ui.css").headers["cache-control"]
    assert "max-age" in immutable
    r = seeded.get(f"/pith/{FORGE}.json")
    again = seeded.get(f"/pith/{FORGE}.json", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["cache-control"] == "public, no-cache"


def test_cache_policy_table() -> None:
    from app.core.http import IMMUTABLE, REVALIDATE, cache_control

    assert cache_control("/log/tile/0/x001/234", b"") == IMMUTABLE
    assert cache_control("/log/tile/0/x001/234.p/7", b"") != IMMUTABLE
    # a bundle grows with its paper's events: no query string makes it immutable
    assert cache_control(f"/pith/{FORGE}/bundle.json", b"log_size=12") == REVALIDATE
    assert cache_control(f"/pith/{FORGE}/bundle.json", b"") == REVALIDATE
    assert "no-store" in cache_control("/api/jobs/lease", b"")


def test_browsers_get_an_html_error_page_clients_problem_json(seeded: TestClient) -> None:
    missing = "/pith/AAAAAAAAAAAAAAAAAAAAAAAAAA"
    page = seeded.get(missing, headers={"accept": BROWSER})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "404" in page.text and 'name="q"' in page.text
    assert_problem(seeded.get(missing), 404, "not_found")
    assert_problem(seeded.get(missing, headers={"accept": "application/json"}), 404)
    assert_problem(seeded.get(missing, headers={"accept": "*/*"}), 404)


def test_docs_and_redoc_load_their_assets_from_this_server(seeded: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = seeded.get(path)
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text)
        assert sources, page.text
        for src in sources:
            assert src.startswith("/"), f"{path} loads {src} from elsewhere"
            asset = seeded.get(src)
            assert asset.status_code == 200 and len(asset.content) > 10_000
    js = seeded.get("/static-offline-docs/swagger-ui-bundle.js").content
    assert hashlib.sha256(js).hexdigest()  # a real file, served whole
    assert b"SwaggerUIBundle" in js
