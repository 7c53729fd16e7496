"""A witness cosignature changes what pages say (a record under a witnessed checkpoint is
anchored) without a new event: cached answers must not keep saying "not anchored". The worker
that keeps the cosignature drops its cached answers at once; another worker within its
`read_cache_seconds`, as for events; an answer built before the change is never kept after it.
(In-process registry; both databases.)"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from nacl.signing import SigningKey
from sqlalchemy import event

from app.core.cache import ReadCache
from app.log.push import cosignature_mark
from app.log.repository import LogRepository
from pith_core import note

from .conftest import make_client
from .helpers import import_seeds, seed_number

SUFFIX = seed_number("000").rsplit(":", 1)[1]
NAME = "witness.example/w1"


def _witnessed(settings: Any, wkey: SigningKey, seconds: float) -> Any:
    vkey = note.verifier_key(NAME, bytes(wkey.verify_key), note.SIG_COSIGNATURE_V1)
    return settings.model_copy(
        update={"log_witnesses": [vkey], "log_witness_quorum": 1, "read_cache_seconds": seconds}
    )


def _cosigned(client: Any, wkey: SigningKey) -> str:
    raw = client.get("/log/checkpoint/unwitnessed").text
    return note.add_signatures(raw, [note.cosign(note.parse_note(raw).text, NAME, wkey, 1)])


def _anchored(client: Any) -> bool:
    return bool(client.get(f"/pith/{SUFFIX}.json").json()["verification_status"][
        "externally_anchored"
    ])  # fmt: skip


def test_a_cosignature_refreshes_this_workers_cached_pages_at_once(
    settings: Any, database: Any, identity: Any
) -> None:
    wkey = SigningKey.generate()
    configured = _witnessed(settings, wkey, 3600)  # the head is not re-read during the test
    import_seeds(database, identity)
    with make_client(configured, database) as client:
        assert _anchored(client) is False
        page = client.get(f"/pith/{SUFFIX}").text
        badge = client.get(f"/pith/{SUFFIX}/badge.svg").text
        assert client.post("/log/cosignature", content=_cosigned(client, wkey)).status_code == 200
        assert _anchored(client) is True  # no new event: the cache's head did not move
        assert client.get(f"/pith/{SUFFIX}").text != page
        assert "anchored (witnessed log)" in client.get(f"/pith/{SUFFIX}").text
        assert client.get(f"/pith/{SUFFIX}/badge.svg").text != badge


def test_another_workers_cosignature_shows_within_its_read_cache_seconds(
    settings: Any, database: Any, identity: Any
) -> None:
    wkey = SigningKey.generate()
    import_seeds(database, identity)
    with (
        make_client(_witnessed(settings, wkey, 0.3), database) as reader,
        make_client(_witnessed(settings, wkey, 3600), database) as writer,
    ):
        assert _anchored(reader) is False  # cached by the reader
        assert writer.post("/log/cosignature", content=_cosigned(writer, wkey)).status_code == 200
        time.sleep(0.4)
        assert _anchored(reader) is True


def test_an_answer_built_before_an_invalidation_is_not_kept_after_it() -> None:
    cache = ReadCache(lambda: 1, ttl=3600)
    assert cache.get("k") is None  # the build starts after this lookup …
    cache.invalidate()  # … a cosignature is kept meanwhile …
    cache.put("k", object(), 1)  # … the old answer arrives
    assert cache.get("k") is None
    fresh = object()
    cache.put("k", fresh, 1)  # looked up again since: kept
    assert cache.get("k") is fresh
    # another thread's invalidation counts too
    cache.get("j")
    t = threading.Thread(target=cache.invalidate)
    t.start()
    t.join()
    cache.put("j", object(), 1)
    assert cache.get("j") is None


def test_a_watched_mark_that_moves_drops_the_entries() -> None:
    mark = [0]
    now = [0.0]
    cache = ReadCache(lambda: 1, ttl=1.0, clock=lambda: now[0])
    cache.watch(lambda: mark[0])
    cache.get("k")
    value = object()
    cache.put("k", value, 1)
    assert cache.get("k") is value
    mark[0] = 1
    assert cache.get("k") is value  # within ttl: not re-read yet
    now[0] = 2.0
    assert cache.get("k") is None
    cache.put("k", value, 1)
    now[0] = 4.0
    assert cache.get("k") is value  # re-read, unchanged: kept


def test_a_put_from_a_thread_that_never_looked_up_keeps_the_epoch_it_read() -> None:
    cache = ReadCache(lambda: 1, ttl=3600)
    cache.get("other")
    cache.invalidate()
    seen = cache.epoch  # read by the building thread before its build
    value = object()
    t = threading.Thread(target=lambda: cache.put("k", value, 1, seen_epoch=seen))
    t.start()
    t.join()
    assert cache.get("k") is value
    stale = cache.epoch
    cache.invalidate()  # a cosignature kept during the next build
    t = threading.Thread(target=lambda: cache.put("j", object(), 1, seen_epoch=stale))
    t.start()
    t.join()
    assert cache.get("j") is None


def test_the_watchs_first_read_drops_nothing() -> None:
    cache = ReadCache(lambda: 1, ttl=3600)
    cache.watch(lambda: 7)
    before = cache.epoch
    assert cache.get("k") is None  # the first read of the mark
    assert cache.epoch == before
    value = object()
    cache.put("k", value, 1, seen_epoch=before)
    assert cache.get("k") is value


def test_log_reads_with_witnesses_are_cached(settings: Any, database: Any, identity: Any) -> None:
    """The log's routes look up on the event loop and build in a worker thread: what they
    build is kept (mirrors' and witnesses' hot path)."""
    wkey = SigningKey.generate()
    import_seeds(database, identity)
    with make_client(_witnessed(settings, wkey, 3600), database) as client:
        cache = client.app.state.ctx.cache
        size = int(client.get("/log").json()["tree_size"])
        assert 0 < size < 256
        for path in ("/log/checkpoint/unwitnessed", f"/log/tile/0/000.p/{size}"):
            cache.invalidate()  # as a cosignature does
            assert cache.size_bytes == 0
            assert client.get(path).status_code == 200
            assert cache.size_bytes > 0, path


def test_the_cosignature_mark_moves_with_the_newest_and_reads_no_whole_table(
    database: Any, backend: str
) -> None:
    """The cache reads the mark on the event loop: it must not grow with the table (a row a
    witness a pushed checkpoint, never pruned), so on SQLite no step of its plan is a scan."""
    at = datetime(2027, 1, 1, tzinfo=UTC)
    key = SigningKey.generate()

    def cosign(size: int, name: str) -> None:
        line = note.cosign(f"log\n{size}\nroot\n", name, key, 1_800_000_000).line()[:-1]
        with database.write() as session:
            LogRepository(session).add_cosignature(size, name, b"\0" * 32, line, at)

    assert cosignature_mark(database) == (0, 0)
    for size in range(2, 30):
        cosign(size, NAME)
    assert cosignature_mark(database) == (29, 1)
    cosign(29, "witness.example/w2")
    assert cosignature_mark(database) == (29, 2)
    cosign(31, "witness.example/w2")
    assert cosignature_mark(database) == (31, 1)
    if backend != "sqlite":
        return
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    with database.read() as session:
        connection = session.connection()
    event.listen(connection, "before_cursor_execute", seen)
    try:
        cosignature_mark(database)
    finally:
        event.remove(connection, "before_cursor_execute", seen)
    queries = [(s, p) for s, p in statements if "tlog_cosignatures" in s]
    assert queries
    for statement, params in queries:
        plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
        steps = [str(row[-1]) for row in plan]
        assert steps and not any(step.startswith("SCAN") for step in steps), steps
