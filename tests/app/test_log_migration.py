"""Migration 0004 makes the events a registry stored before the log existed its leaves, in
log-index order: dropping the log (downgrade to 0003) and building it again (upgrade) gives the
same tree, root for root."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from app.log.repository import LogRepository
from app.log.service import root_at
from app.registry.service import load_identity
from app.settings import Settings
from app.storage.engine import Database
from app.storage.migrate import alembic_config, upgrade_database

from .helpers import import_seeds


def _tree(url: str) -> tuple[int, bytes, list[tuple[int, int]]]:
    db = Database(url)
    try:
        with db.read() as session:
            repo = LogRepository(session)
            size = repo.size()
            pairs = [(i, e) for i, e in repo.leaf_indices_all()]
            return size, root_at(repo, size), pairs
    finally:
        db.dispose()


def test_the_log_is_rebuilt_from_the_events_by_the_migration(
    backend: str, fresh_databases, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = fresh_databases.new(backend)
    settings = Settings(database_url=url, key_file=tmp_path / "key.json")
    db = Database(url)
    try:
        import_seeds(db, load_identity(settings))
    finally:
        db.dispose()
    before = _tree(url)
    assert before[0] == 10  # the seeds' record and graph events, each a leaf
    command.downgrade(alembic_config(url), "0003")
    upgrade_database(url)
    assert _tree(url) == before


def test_the_backfill_streams_the_events_in_batches(
    backend: str, fresh_databases, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Batches of 3 over the seeds' 10 events: four appends of at most 3 leaves, never all
    events at once, and the same tree as one batch gives."""
    from pith_core import tlog

    url = fresh_databases.new(backend)
    settings = Settings(database_url=url, key_file=tmp_path / "key.json")
    db = Database(url)
    try:
        import_seeds(db, load_identity(settings))
    finally:
        db.dispose()
    before = _tree(url)
    command.downgrade(alembic_config(url), "0003")
    appended: list[int] = []
    real = tlog.append_leaves

    def counting(size, front, hashes):  # type: ignore[no-untyped-def]
        hashes = list(hashes)
        appended.append(len(hashes))
        return real(size, front, hashes)

    monkeypatch.setattr(tlog, "append_leaves", counting)  # the migration imports it when loaded
    cfg = alembic_config(url)
    cfg.attributes["backfill_batch"] = 3
    command.upgrade(cfg, "head")
    assert appended == [3, 3, 3, 1]
    assert _tree(url) == before
