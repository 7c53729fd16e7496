"""The registry's side of C2SP tlog-witness: when its tree has grown past what a configured
witness last cosigned, it POSTs `add-checkpoint` (the witness's size, the consistency proof from
there, the signed checkpoint) and keeps the cosignature it gets back, as a witness's POST to
/log/cosignature would be kept. A background task of each worker does it every
PITH_LOG_WITNESS_PUSH_SECONDS; two workers pushing one checkpoint is harmless (the witness
answers 409 with its size to the second, which then asks again from there).

A cosignature changes what pages say (a record under a witnessed checkpoint is anchored) without
a new event, so `install` also has each worker's read cache watch the cosignatures: a mark of
the newest ones (`cosignature_mark`), read with the log head, drops cached answers when it moves
(another worker's, or a pull witness's POST), and a cosignature this worker keeps drops them at
once (one at an older size moves no mark: only the worker that kept it drops its answers at once,
the others when the log head next moves)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from pith_core.logcheck import SIZE_MEDIA_TYPE, add_checkpoint_body

from ..core.problems import Problem
from ..storage.engine import Database
from . import service
from .models import LogCosignature
from .repository import LogRepository

LOG = logging.getLogger("pith.log.push")


def push_once(
    db: Database,
    signer: service.LogSigner,
    urls: Mapping[str, str],
    client: httpx.Client,
    on_cosigned: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """One round: each configured witness with a URL that has not cosigned the current tree
    is asked to; witness name → what happened. `on_cosigned` runs after each cosignature is
    kept (the read cache's invalidation)."""
    with db.read() as session:
        size, _, checkpoint = service.current_checkpoint(session, signer)
        known = LogRepository(session).last_cosigned_sizes([w.name for w in signer.witnesses])
    out: dict[str, Any] = {}
    for witness in signer.witnesses:
        url = urls.get(witness.name)
        if url is None or size == 0 or known.get(witness.name, 0) >= size:
            continue
        try:
            out[witness.name] = _push(db, signer, url, client, known.get(witness.name, 0), size,
                                      checkpoint)  # fmt: skip
            if out[witness.name].get("status") == 200:
                on_cosigned()
        except (httpx.HTTPError, Problem, ValueError) as e:
            out[witness.name] = {"error": str(e)}
    return out


def _push(
    db: Database,
    signer: service.LogSigner,
    url: str,
    client: httpx.Client,
    old: int,
    size: int,
    checkpoint: str,
) -> dict[str, Any]:
    endpoint = url.rstrip("/") + "/add-checkpoint"
    for _ in range(2):  # once from what we know, once from the size a 409 names
        with db.read() as session:
            proof = service.consistency_proof(session, old, size) if 0 < old < size else []
        r = client.post(endpoint, content=add_checkpoint_body(old, proof, checkpoint))
        if r.status_code == 409 and r.headers.get("content-type", "").startswith(SIZE_MEDIA_TYPE):
            held = int(r.text.strip())
            if held > size:
                return {"error": f"the witness holds size {held}, above this log's {size}"}
            old = held
            continue
        break
    if r.status_code != 200:
        return {"status": r.status_code, "error": r.text.strip()[:200]}
    with db.write() as session:
        kept = service.add_cosignature(session, signer, checkpoint + r.text)
    return {"status": 200, "tree_size": size, **kept}


class WitnessPusher:
    """The background task: a round every `interval` seconds while the app runs."""

    def __init__(
        self,
        db: Database,
        signer: service.LogSigner,
        urls: Mapping[str, str],
        interval: float,
        on_cosigned: Callable[[], None] = lambda: None,
    ) -> None:
        self.db, self.signer, self.urls, self.interval = db, signer, dict(urls), interval
        self.on_cosigned = on_cosigned
        self.client = httpx.Client(timeout=10)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.client.close()

    async def _run(self) -> None:
        while True:
            try:
                done = await run_in_threadpool(
                    push_once, self.db, self.signer, self.urls, self.client, self.on_cosigned
                )
                for name, result in done.items():
                    if "error" in result:
                        LOG.warning("witness %s: %s", name, result["error"])
            except Exception:  # a database hiccup must not end the task: next round
                LOG.exception("witness push round failed")
            await asyncio.sleep(self.interval)


def cosignature_mark(db: Database) -> tuple[int, int]:
    """(the largest cosigned tree size, its cosignatures): it moves with each new checkpoint
    cosigned and each witness more on the newest one. Two index lookups on the primary key
    (tree size, witness), however many rows the table holds: the cache reads it on the event
    loop, and the table is never pruned."""
    newest = select(func.max(LogCosignature.tree_size)).scalar_subquery()
    stmt = (
        select(LogCosignature.tree_size, func.count())
        .where(LogCosignature.tree_size == newest)
        .group_by(LogCosignature.tree_size)
    )
    with db.read() as session:
        row = session.execute(stmt).first()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def install(app: Any, db: Database, signer: service.LogSigner, settings: Any) -> None:
    """With witnesses configured, the read cache watches the cosignatures; a WitnessPusher runs
    with the app when PITH_LOG_WITNESS_URLS names any witness."""
    if not signer.witnesses:
        return
    cache = app.state.ctx.cache
    cache.watch(lambda: cosignature_mark(db))
    if not settings.log_witness_urls:
        return
    pusher = WitnessPusher(
        db, signer, settings.log_witness_urls, settings.log_witness_push_seconds, cache.invalidate
    )
    app.router.on_startup.append(pusher.start)
    app.router.on_shutdown.append(pusher.stop)
