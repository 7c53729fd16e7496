"""`replication/gpu_e2e.sh`, the GPU run of issue 6, run here on the CPU with the smoke profiles:
it serves, registers, queues, runs the worker until both jobs are done, stops it with SIGTERM,
and exports signed records that verify and that `pith serve` loads as committed evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import load_results
from app.events.service import compute_state
from app.registry.service import load_identity
from app.settings import Settings
from app.storage.engine import Database
from pith_core import verify_event
from tests.app.helpers import import_seeds
from tests.replication.jobs_support import FORGE, SAGE

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "replication" / "gpu_e2e.sh"


def test_the_gpu_script_runs_forge_and_sage_smoke_and_exports_evidence(
    tmp_path: Path, fresh_databases
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "PITH_E2E_PROFILE": "smoke",
        "PITH_E2E_DEADLINE_S": "420",  # SAGE's smoke trains 3 seeds; a loaded 2-core host is slow
        "PITH_GIT_COMMIT": "script-test",
        "TMPDIR": str(tmp_path),
    }
    run = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=480
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "log.txt",
            "worker.jsonl",
            *(
                f"{kind}_{claim}.json"
                for kind in ("records", "state", "bundle")
                for claim in ("forge", "sage")
            ),
        ]
    )  # 8 files: what one device call brings back
    worker = [json.loads(line) for line in (out / "worker.jsonl").read_text().splitlines()]
    assert [w["event"] for w in worker if w["event"] in ("submitted", "stopping")] == [
        "submitted",
        "submitted",
        "stopping",
    ]
    for claim, pith in (("forge", FORGE), ("sage", SAGE)):
        (record,) = json.loads((out / f"records_{claim}.json").read_text())
        verify_event(record)
        payload = record["payload"]
        assert (record["subject_pith_number"], payload["claim_id"], payload["profile"]) == (
            pith,
            claim,
            "smoke",
        )
        assert (
            payload["verdict"] != "error" and payload["environment"]["git_commit"] == "script-test"
        )
        state = json.loads((out / f"state_{claim}.json").read_text())
        assert [r["event_id"] for r in state["current"]["replication_records"]] == [
            record["event_id"]
        ]
        assert record in json.loads((out / f"bundle_{claim}.json").read_text())["events"]
    assert "done: jobs all done, export verified" in (out / "log.txt").read_text()

    # The exported files are committed evidence: `pith serve` loads them into a new registry.
    results = tmp_path / "results"
    results.mkdir()
    for claim in ("forge", "sage"):
        (results / f"{claim}.json").write_text((out / f"records_{claim}.json").read_text())
    url = fresh_databases.new("sqlite")
    settings = Settings(database_url=url, key_file=tmp_path / "key.json", results_dir=results)
    identity = load_identity(settings)
    db = Database(url)
    import_seeds(db, identity)
    load_results(settings)
    with db.read() as session:
        for claim, pith in (("forge", FORGE), ("sage", SAGE)):
            (record,) = json.loads((results / f"{claim}.json").read_text())
            state = compute_state(session, identity, pith, save=False)
            assert [r["event_id"] for r in state["current"]["replication_records"]] == [
                record["event_id"]
            ]
    db.dispose()
