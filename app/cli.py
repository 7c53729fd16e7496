"""`pith serve`, `pith db upgrade`, `pith import`: the service's subcommands of the `pith` CLI
(registered through the `pith.cli` entry-point group)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Any:
    from .settings import Settings

    overrides = {}
    for name in ("database_url", "host", "port", "workers"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def import_files(
    settings: Any, paths: list[Path], trusted_key_hex: str | list[str], out: Any = None
) -> int:
    """Verify every file first, then store them all in one transaction (or nothing)."""
    from pith_core.errors import PithError
    from pith_core.keys import public_key_from_hex

    from .records.importing import ImportRefused, read_candidate
    from .records.service import import_candidates
    from .registry.service import load_identity
    from .storage.engine import Database

    try:
        hexes = [trusted_key_hex] if isinstance(trusted_key_hex, str) else trusted_key_hex
        key = [public_key_from_hex(k) for k in hexes]
    except PithError as e:
        print(f"pith import: {e}", file=sys.stderr)
        return EXIT_USAGE
    candidates, refused = [], []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            print(f"pith import: cannot read {path}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
        try:
            candidates.append(read_candidate(data, str(path), key))
        except ImportRefused as e:
            refused.append(e)
    for e in refused:
        print(f"pith import: refused {e}", file=sys.stderr)
    if refused:
        print(
            f"pith import: nothing stored ({len(refused)} of {len(paths)} refused)", file=sys.stderr
        )
        return EXIT_FAILED
    db = Database(settings.database_url)
    try:
        identity = load_identity(settings)
        with db.write() as session:
            stored = import_candidates(session, identity, candidates)
            lines = [
                f"{'imported' if s.created else 'present '} {s.record.pith_number}  {c.source}"
                + (f"  ({'; '.join(c.notes)})" if c.notes and s.created else "")
                for s, c in zip(stored, candidates, strict=True)
            ]
    finally:
        db.dispose()
    print("\n".join(lines), file=out or sys.stdout)
    return EXIT_OK


def seed_if_empty(settings: Any) -> None:
    """On an empty database, import the seeds (real public records) so a new user sees some."""
    from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX

    from .records.repository import RecordRepository
    from .storage.engine import Database

    db = Database(settings.database_url)
    try:
        with db.read() as session:
            empty = RecordRepository(session).count() == 0
    finally:
        db.dispose()
    seeds = sorted(p for p in Path(settings.seeds_dir).glob("*.txt")) if empty else []
    if seeds:
        print(f"pith serve: empty database: importing {len(seeds)} seed records", file=sys.stderr)
        # `pith serve` has no result: what it did goes to stderr with its other messages
        code = import_files(settings, seeds, PUBLIC_REGISTRY_KEY_HEX, out=sys.stderr)
        if code != EXIT_OK:
            raise SystemExit(code)


def load_results(settings: Any) -> None:
    """Load the signed replication records committed under `settings.results_dir`: every file
    verified first, then stored through the events service in one transaction (or none)."""
    from .events.service import Clock
    from .registry.service import load_identity
    from .replication.results import ResultsRefused, read_results, results_files, store_results
    from .storage.engine import Database

    files = results_files(Path(settings.results_dir))
    if not files:
        return
    identity = load_identity(settings)
    clock = Clock.now(settings.max_clock_skew_seconds)
    try:
        events = [event for path in files for event in read_results(path, identity, clock)]
    except ResultsRefused as e:
        print(f"pith serve: replication results refused, nothing loaded: {e}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from e
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            loaded = store_results(session, identity, events)
    finally:
        db.dispose()
    skipped = f", {len(loaded.skipped)} about papers not here" if loaded.skipped else ""
    print(
        f"pith serve: replication results from {len(files)} file(s): {loaded.stored} stored, "
        f"{loaded.present} already present{skipped}",
        file=sys.stderr,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .registry.service import load_identity
    from .storage.migrate import upgrade_database

    settings = _settings(args)
    upgrade_database(settings.database_url)
    if settings.import_seeds_when_empty and not args.no_seeds:
        seed_if_empty(settings)
    load_results(settings)
    identity = load_identity(settings)  # created here, before workers start, so they share it
    print(
        f"pith serve: {settings.base_url} · key {identity.key.key_id} ({identity.fingerprint}) "
        f"· {settings.workers} worker(s)",
        file=sys.stderr,
    )
    # Workers read their settings from the environment, like this process did.
    for name in ("database_url", "host", "port", "workers"):
        os.environ[f"PITH_{name.upper()}"] = str(getattr(settings, name))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=settings.access_log,
        log_level=args.log_level,
        proxy_headers=settings.trust_forwarded_for,
    )
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .storage.migrate import current_revision, upgrade_database

    settings = _settings(args)
    upgrade_database(settings.database_url, args.revision)
    print(f"database at revision {current_revision(settings.database_url)}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX

    from .storage.migrate import upgrade_database

    settings = _settings(args)
    upgrade_database(settings.database_url)
    return import_files(settings, args.files, args.trusted_key or [PUBLIC_REGISTRY_KEY_HEX])


def register(subparsers: Any) -> None:
    """Entry point of the `pith.cli` group: add the service's subcommands."""

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url", default=None, help="overrides PITH_DATABASE_URL (sqlite:///./pith.db)"
        )

    p = subparsers.add_parser(
        "serve",
        help="run the registry: migrate, import the seeds into an empty database, load the "
        "committed replication records, serve",
    )
    db_option(p)
    p.add_argument("--host", default=None, help="overrides PITH_HOST (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="overrides PITH_PORT (8000)")
    p.add_argument("--workers", type=int, default=None, help="overrides PITH_WORKERS (1)")
    p.add_argument("--no-seeds", action="store_true", help="do not import the seeds")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's log level (info)",
    )
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("db", help="database schema (Alembic migrations)")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="apply the migrations (default: to head)")
    db_option(up)
    up.add_argument(
        "revision", nargs="?", default="head", help="the revision to reach (default: head)"
    )
    up.set_defaults(func=cmd_db_upgrade)

    p = subparsers.add_parser(
        "import",
        help="import records published by another registry, verified under a trusted key",
        description="Files are record documents, merged states, or a record page as text "
        "(no receipt: this registry signs its own). All verify, or nothing is stored.",
    )
    db_option(p)
    p.add_argument(
        "files", nargs="+", type=Path, help="record documents, merged states or record pages"
    )
    p.add_argument(
        "--trusted-key",
        action="append",
        metavar="HEX",
        help="raw Ed25519 key (hex) receipts (and a bundle's registry events) must verify under; "
        "repeatable (default: the public registry's)",
    )
    p.set_defaults(func=cmd_import)

    from .log.cli import register as register_log  # issue 15: pith log …, pith witness

    register_log(subparsers)


def main(argv: list[str] | None = None) -> int:
    """`python -m app.cli serve|db|import`: the service's commands where the `pith` entry point
    is not installed (a checkout run with PYTHONPATH=., as on the GPU machine)."""
    parser = argparse.ArgumentParser(prog="python -m app.cli")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
