"""The application factory: `create_app(settings)` wires storage, identity, routes, errors."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from .core import http, problems
from .core.cache import CachedReadMiddleware, ReadCache
from .core.context import AppContext
from .core.guard import GuardMiddleware
from .core.openapi import PROBLEM_RESPONSES
from .core.ratelimit import SharedBuckets
from .discovery.routes import router as discovery_router
from .events.repository import EventRepository
from .events.routes import router as events_router
from .exports.routes import router as exports_router
from .log.routes import router as log_router
from .pages.routes import router as pages_router
from .records.routes import router as records_router
from .registry.routes import router as registry_router
from .registry.service import load_identity
from .replication.routes import router as replication_router
from .search.routes import router as search_router
from .settings import Settings
from .storage.engine import Database
from .trust.routes import router as trust_router

DESCRIPTION = """Content-addressed, signed records of scientific papers (Pith numbers), the signed
events about them, and their deterministically merged states. Errors are
`application/problem+json`. Registry acts (`POST /api/records`, `POST /api/import`) need
`Authorization: Bearer <admin token>`, as do registering GPU workers and queueing replication
jobs; submitting an event needs only a valid signature. A worker's calls on `/api/jobs/...` are
signed with its registered Ed25519 key (`X-Pith-*` headers, see `pith_core.request_auth`)."""


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    log_append: bool = True,
) -> FastAPI:
    """The service. `database` overrides the one `settings.database_url` names (tests bind one
    to a connection whose transaction they roll back). `log_append=False` is bench/log.py's
    alone: events stored without log leaves, to measure ingest without the log (no setting
    reaches it: a production registry always logs)."""
    settings = settings or Settings()
    db = database or Database(settings.database_url)
    identity = load_identity(settings)

    def log_head() -> int:
        with db.read() as session:
            return EventRepository(session).head()

    app: FastAPI = FastAPIOffline(  # /docs and /redoc with their assets served from here
        title="Pith registry",
        version="1.0",
        description=DESCRIPTION,
        responses=PROBLEM_RESPONSES,
    )
    app.state.ctx = AppContext(
        settings=settings,
        db=db,
        identity=identity,
        cache=ReadCache(
            log_head, settings.read_cache_seconds, max_bytes=settings.read_cache_max_bytes
        ),
        log_append=log_append,
    )
    problems.install(app)
    if settings.read_cache_seconds > 0 and settings.cached_reads_before_routing:
        app.add_middleware(CachedReadMiddleware, cache=app.state.ctx.cache)
    app.add_middleware(  # added last, so outermost: the limits apply to cached reads too
        GuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        reads_per_minute=settings.rate_limit_reads_per_minute,
        writes_per_minute=settings.rate_limit_writes_per_minute,
        trust_forwarded_for=settings.trust_forwarded_for,
        forwarded_hops=settings.forwarded_hops,
        shared_writes=SharedBuckets(db, "write", settings.rate_limit_writes_per_minute),
        body_timeout_seconds=settings.body_timeout_seconds,
        public_url=settings.base_url,
        processes=settings.workers,
    )
    http.install(app)  # HEAD/OPTIONS, CORS, compression, Cache-Control: outside the guard
    # `/pith/{id}.json` before `/pith/{id}`: the latter would match "X.json" too.
    app.include_router(records_router)
    app.include_router(events_router)
    app.include_router(log_router)
    app.include_router(registry_router)
    app.include_router(replication_router)
    app.include_router(trust_router)
    app.include_router(search_router)
    app.include_router(discovery_router)
    app.include_router(exports_router)
    app.include_router(pages_router)
    from .log.push import install as install_witness_push
    from .log.routes import signer_of as log_signer_of

    install_witness_push(app, db, log_signer_of(app.state.ctx), settings)  # issue 15
    if database is None:
        app.router.on_shutdown.append(db.dispose)
    if settings.gc_freeze_at_startup:
        app.router.on_startup.append(freeze_startup_objects)
    return app


def freeze_startup_objects() -> None:
    """Collect, then freeze what survives: the objects a started worker keeps for its life are
    no longer traversed by every full collection (about 175k of them; each full collection
    walked them all, a tenth of ingest's CPU). What requests allocate is collected as before."""
    gc.collect()
    gc.freeze()
