"""Jobs at the storage level, on committed databases of their own (SQLite and PostgreSQL): two
units of work leasing at once never take the same job (PostgreSQL skips the row the other holds
without waiting; SQLite makes the second wait for the first), and the committed replication
records `pith serve` loads (verified whole, stored through the action path, idempotent)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app.cli import load_results
from app.events.repository import EventRepository
from app.events.service import Clock, compute_state
from app.registry.service import load_identity
from app.replication import service
from app.replication.repository import ReplicationRepository
from app.replication.results import ResultsRefused, read_results, store_results
from app.replication.schemas import CreateJob, RegisterWorker
from app.settings import Settings
from app.storage.engine import Database
from tests.app.helpers import import_seeds, new_key
from tests.replication.jobs_support import FORGE, SAGE, record_event


@pytest.fixture()
def committed(fresh_databases, backend: str, tmp_path: Path) -> Any:  # type: ignore[no-untyped-def]
    """A fresh migrated database holding the seeds, its settings, identity and units of work."""
    url = fresh_databases.new(backend)
    settings = Settings(database_url=url, key_file=tmp_path / "registry-key.json")
    identity = load_identity(settings)
    db = Database(url)
    import_seeds(db, identity)
    yield settings, identity, db
    db.dispose()


def test_two_units_leasing_at_once_take_different_jobs(committed: Any) -> None:
    _, _, db = committed
    with db.write() as session:
        key = new_key("w")
        service.register_worker(
            session, RegisterWorker(worker_id="w", public_key_hex=key.public_key.hex())
        )
        for _ in range(2):
            service.create_job(session, CreateJob(pith=FORGE, claim_id="forge", profile="smoke"))
    worker = service.AuthenticatedWorker("w", key.fingerprint)
    taken: list[str] = []
    second_started = threading.Event()
    second_done: list[float] = []

    def second() -> None:
        second_started.set()
        t0 = time.monotonic()
        with db.write() as session:
            job, _ = service.lease_next(session, worker, ["forge"], ttl_s=60)
            taken.append(job.job_id)
        second_done.append(time.monotonic() - t0)

    with db.write() as session:
        job, _ = service.lease_next(session, worker, ["forge"], ttl_s=60)
        taken.append(job.job_id)
        thread = threading.Thread(target=second)
        thread.start()
        second_started.wait()
        time.sleep(0.5)  # the first unit holds its job (and, on SQLite, the write lock) a while
        if db.dialect == "postgresql":
            assert second_done, "the second lease waited for the first: SKIP LOCKED is not at work"
        else:
            assert not second_done, "SQLite let two write units run at once"
    thread.join(timeout=30)
    assert len(taken) == 2 and len(set(taken)) == 2
    with db.read() as session:
        jobs = ReplicationRepository(session).jobs()
        assert [j.state for j in jobs] == ["leased", "leased"]


def _write(tmp_path: Path, name: str, events: list[dict[str, Any]]) -> Path:
    directory = tmp_path / "results"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(json.dumps(events))
    return directory


def _job(pith: str, claim: str) -> dict[str, Any]:
    return {
        "job_id": "job_00000000000000aa",
        "claim_id": claim,
        "profile": "h100",
        "pith_number": pith,
    }


def test_committed_records_load_once_and_paper_by_paper(
    committed: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, identity, db = committed
    key = new_key("gpu-evidence")
    forge = record_event(key, _job(FORGE, "forge"))
    sage = record_event(key, _job(SAGE, "sage"))
    elsewhere = record_event(key, _job("pith:2026:AAAAAAAAAAAAAAAAAAAAAAAAAA", "forge"))
    directory = _write(tmp_path, "forge.json", [forge])
    _write(tmp_path, "sage.json", [sage, elsewhere])
    settings = settings.model_copy(update={"results_dir": directory})
    load_results(settings)
    assert "2 stored, 0 already present, 1 about papers not here" in capsys.readouterr().err
    load_results(settings)  # a second start stores nothing twice
    assert "0 stored, 2 already present" in capsys.readouterr().err
    with db.read() as session:
        for pith, event in ((FORGE, forge), (SAGE, sage)):
            state = compute_state(session, identity, pith, save=False)
            assert [r["event_id"] for r in state["current"]["replication_records"]] == [
                event["event_id"]
            ]
        assert EventRepository(session).by_event_id(elsewhere["event_id"]) is None


@pytest.mark.parametrize("damage", ["tampered", "not_a_list", "other_target", "not_json"])
def test_a_results_file_that_does_not_verify_stops_the_start(
    committed: Any, tmp_path: Path, damage: str
) -> None:
    settings, _, db = committed
    key = new_key("gpu-evidence")
    good = record_event(key, _job(FORGE, "forge"))
    directory = _write(tmp_path, "a.json", [good])
    if damage == "tampered":
        bad: Any = [{**record_event(key, _job(SAGE, "sage")), "seq": 5}]
    elif damage == "not_a_list":
        bad = good
    else:
        bad = [record_event(key, _job(SAGE, "sage"), target="citation_signature")]
    path = directory / "b.json"
    path.write_text("{nope" if damage == "not_json" else json.dumps(bad))
    with pytest.raises(SystemExit):
        load_results(settings.model_copy(update={"results_dir": directory}))
    with pytest.raises(ResultsRefused, match=r"b\.json"):
        read_results(path, load_identity(settings), Clock.now(300))
    with db.read() as session:  # nothing of either file was stored
        assert EventRepository(session).by_event_id(good["event_id"]) is None


def test_no_results_directory_is_nothing_to_do(committed: Any, tmp_path: Path) -> None:
    settings, identity, db = committed
    load_results(settings.model_copy(update={"results_dir": tmp_path / "missing"}))
    with db.write() as session:
        assert store_results(session, identity, []).stored == 0
