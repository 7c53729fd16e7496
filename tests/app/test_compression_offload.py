"""Large answers are compressed in a worker thread, once per body and encoding, and kept in the
read cache within its byte bound; what a client decompresses is the plain body, byte for byte."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from typing import Any

import brotli
import httpx
import pytest
import zstandard
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.core import http
from app.core.cache import ReadCache
from app.core.context import Rendered, RenderedResponse

from .helpers import new_key, seed_number, signed_event

DECODE = {
    "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
    "br": brotli.decompress,
    "gzip": gzip.decompress,
}
# A large JSON body of the shape of a state (many similar entries): well past OFFLOAD_MIN_BYTES.
BODY = json.dumps(
    {"entries": [{"event_id": f"sha256:{i:064x}", "note": f"entry {i}"} for i in range(4000)]}
).encode()


def fetch(client: TestClient, path: str, encoding: str, **kwargs: Any) -> bytes:
    """The body as sent, decompressed here (not by the client, which may lack a decoder)."""
    with client.stream("GET", path, headers={"accept-encoding": encoding}, **kwargs) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_raw())
    if encoding == "identity":
        assert "content-encoding" not in r.headers
        return raw
    assert r.headers["content-encoding"] == encoding
    return bytes(DECODE[encoding](raw))


class Spy:
    """The real compressors, counting their calls and the threads they ran in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        real = dict(http.COMPRESSORS)
        for name, fn in real.items():

            def counted(body: bytes, name: str = name, fn: Any = fn) -> bytes:
                self.calls.append((name, threading.get_ident()))
                return bytes(fn(body))

            monkeypatch.setitem(http.COMPRESSORS, name, counted)


def _app(cache: ReadCache | None, loop_threads: list[int]) -> Any:
    rendered = Rendered.of(BODY, "application/json")

    async def cached(request: Request) -> Response:
        loop_threads.append(threading.get_ident())  # an async route runs on the event loop
        return RenderedResponse(rendered)

    async def plain(request: Request) -> Response:
        loop_threads.append(threading.get_ident())
        status = 201 if request.method == "POST" else 200  # a batch that stored something
        return Response(BODY, status_code=status, media_type="application/json")

    async def small(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    app = Starlette(
        routes=[
            Route("/cached", cached),
            Route("/plain", plain, methods=["GET", "POST"]),
            Route("/small", small),
        ]
    )
    return http.OffloadedCompressionMiddleware(app, cache=cache)


def _cache() -> ReadCache:
    return ReadCache(lambda: 1, ttl=3600, max_bytes=4 * len(BODY) + 4096)


@pytest.mark.parametrize("encoding", ["zstd", "br", "gzip"])
def test_a_compressed_answer_decompresses_to_the_plain_body(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    loop_threads: list[int] = []
    with TestClient(_app(_cache(), loop_threads)) as client:
        for path in ("/cached", "/plain"):
            r = client.get(path, headers={"accept-encoding": encoding})
            assert r.status_code == 200
            assert r.headers["content-encoding"] == encoding
            assert "accept-encoding" in r.headers["vary"].lower()
            with client.stream("GET", path, headers={"accept-encoding": encoding}) as s:
                packed = b"".join(s.iter_raw())
            assert int(s.headers["content-length"]) == len(packed) < len(BODY)
            assert DECODE[encoding](packed) == BODY
        posted = client.post("/plain", headers={"accept-encoding": encoding})  # (a batch's answer)
        assert posted.status_code == 201
        assert posted.headers["content-encoding"] == encoding
    assert {name for name, _ in spy.calls} == {encoding}
    assert len(spy.calls) == 4  # the rendering once (kept), the plain answer each time
    assert not {thread for _, thread in spy.calls} & set(loop_threads)  # never on the loop


def test_a_rendering_is_compressed_once_however_many_ask_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = Spy(monkeypatch)
    cache = _cache()
    app = _app(cache, [])

    async def one(client: httpx.AsyncClient) -> bytes:
        async with client.stream("GET", "/cached", headers={"accept-encoding": "zstd"}) as r:
            assert r.headers["content-encoding"] == "zstd"
            return bytes(DECODE["zstd"](b"".join([c async for c in r.aiter_raw()])))

    async def burst() -> list[bytes]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = list(await asyncio.gather(*(one(client) for _ in range(12))))
            answers.append(await one(client))
        return answers

    bodies = asyncio.run(burst())
    assert bodies == [BODY] * 13
    assert [name for name, _ in spy.calls] == ["zstd"]  # one compression, twelve waiters, a hit
    assert 0 < cache.size_bytes <= cache.max_bytes  # the compressed body is counted


def test_one_askers_disconnect_does_not_fail_the_others_waiting_on_the_compression(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first asker (the one that started the compression) is cancelled mid-compression;
    the others waiting on the same body still get it, compressed once."""
    started, release = threading.Event(), threading.Event()
    real = http.COMPRESSORS["zstd"]
    calls: list[int] = []

    def slow(body: bytes) -> bytes:
        calls.append(1)
        started.set()
        release.wait(10)
        return bytes(real(body))

    monkeypatch.setitem(http.COMPRESSORS, "zstd", slow)
    middleware = http.OffloadedCompressionMiddleware(lambda *_: None, cache=_cache())
    etag = Rendered.of(BODY, "application/json").etag

    async def scenario() -> list[bytes]:
        first = asyncio.ensure_future(middleware._encode(BODY, "zstd", etag))
        while not started.is_set():
            await asyncio.sleep(0.001)
        others = [asyncio.ensure_future(middleware._encode(BODY, "zstd", etag)) for _ in range(3)]
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0.01)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return list(await asyncio.gather(*others))

    packed = asyncio.run(scenario())
    assert [DECODE["zstd"](p) for p in packed] == [BODY] * 3
    assert calls == [1]
    assert middleware._inflight == {}


def test_compressed_bodies_count_in_the_cache_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kept variant counts in the bound; a cache too small for one keeps none (the answer
    is still right, compressed again when asked)."""
    spy = Spy(monkeypatch)
    packed = {e: http.COMPRESSORS[e](BODY) for e in ("zstd", "br", "gzip")}
    spy.calls.clear()
    cache = _cache()
    with TestClient(_app(cache, [])) as client:
        for encoding in ("zstd", "br", "gzip", "zstd", "br"):
            assert fetch(client, "/cached", encoding) == BODY
            assert cache.size_bytes <= cache.max_bytes
    assert cache.size_bytes >= sum(len(p) for p in packed.values())
    assert sorted(n for n, _ in spy.calls) == ["br", "gzip", "zstd"]  # each kept, reused
    tiny = ReadCache(lambda: 1, ttl=3600, max_bytes=1024)
    with TestClient(_app(tiny, [])) as client:
        for _ in range(2):
            assert fetch(client, "/cached", "gzip") == BODY
    assert tiny.size_bytes == 0
    assert [n for n, _ in spy.calls].count("gzip") == 3  # twice more: nothing could be kept


def test_small_answers_and_identity_requests_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    with TestClient(_app(_cache(), [])) as client:
        small = client.get("/small", headers={"accept-encoding": "zstd"})
        plain = client.get("/cached", headers={"accept-encoding": "identity"})
        refused = client.get("/cached", headers={"accept-encoding": "zstd;q=0, br;q=0, gzip;q=0"})
    assert "content-encoding" not in small.headers
    assert "content-encoding" not in plain.headers and plain.content == BODY
    assert "content-encoding" not in refused.headers and refused.content == BODY
    assert spy.calls == []


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("gzip;q=0.1", "gzip"),
        ("br;q=0, *", "zstd"),
        ("zstd;q=0, *;q=0.5", "br"),
        ("zstd;q=0, br;q=0, *", "gzip"),
        ("deflate", None),
        ("gzip;q=0", None),
        ("gzip;q=nonsense", None),
        ("", None),
    ],
)
def test_the_encoding_follows_accept_encoding_in_the_servers_order(
    accept: str, chosen: str | None
) -> None:
    assert http.preferred_encoding([(b"accept-encoding", accept.encode())]) == chosen


def test_cache_busting_reads_of_a_large_state_share_one_compression(
    seeded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry itself: a state past the offload size, read with random query strings that
    no route reads, is rendered once and compressed once, and every answer is its bytes."""
    forge = seed_number("000")
    suffix = forge.rsplit(":", 1)[1]
    key = new_key("bulk")
    events, prev = [], None
    for seq in range(1, 301):
        event = signed_event(key, forge, seq=seq, prev=prev)
        events.append(event)
        prev = event["event_id"]
    assert seeded.post("/api/events", json=events).status_code == 201
    plain = seeded.get(f"/pith/{suffix}/state.json", headers={"accept-encoding": "identity"})
    assert len(plain.content) > http.OFFLOAD_MIN_BYTES
    spy = Spy(monkeypatch)
    for i in range(5):
        got = fetch(seeded, f"/pith/{suffix}/state.json", "br", params={"cb": str(i)})
        assert got == plain.content
    assert [name for name, _ in spy.calls] == ["br"]
