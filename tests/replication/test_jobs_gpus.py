"""Jobs that span GPUs (issue 17): a claim profile names the GPUs it needs, the job carries
that count, the API leases it only to a worker advertising as many (SQLite and PostgreSQL), and
the worker runs it through torchrun and signs how many GPUs the run used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from replication.claims.registry import CLAIMS
from replication.claims.spec import CheckSpec, ClaimSpec
from replication.client import JobAPIError
from replication.runner import claim_command, run_claim
from replication.worker import advertised_gpus, build_parser, job_gpus, run_environment
from tests.app.helpers import new_key
from tests.replication.jobs_support import FORGE, job_client, queue, register

# --- the claim spec --------------------------------------------------------------------------


def _spec(**kw: object) -> ClaimSpec:
    return ClaimSpec(
        claim_id="x",
        paper="x",
        arxiv="",
        statement="s",
        scale="s",
        profiles=("smoke", "full", "pair"),
        checks=(CheckSpec("c", "c", ">=", 1.0),),
        legacy_profiles={"h100": "full", "old_pair": "pair"},
        **kw,
    )


def test_a_profile_names_the_gpus_it_needs() -> None:
    spec = _spec(gpus={"pair": 2})
    assert [spec.gpus_for(p) for p in ("smoke", "full", "pair")] == [0, 1, 2]
    assert spec.gpus_for("old_pair") == 2  # a legacy id runs as the profile it maps to
    assert spec.gpus_for("h100") == 1
    with pytest.raises(ValueError, match="unknown profile"):
        spec.gpus_for("nope")


@pytest.mark.parametrize("gpus", [{"nope": 2}, {"pair": 0}, {"pair": "2"}])
def test_a_malformed_gpu_count_is_refused(gpus: dict) -> None:
    with pytest.raises(ValueError, match="gpus"):
        _spec(gpus=gpus)


def test_the_selftest_claim_has_a_two_gpu_profile() -> None:
    assert CLAIMS["selftest"].gpus_for("two_gpus") == 2


# --- the job API (both databases through `seeded`) -------------------------------------------


def test_a_job_carries_the_gpus_its_profile_needs(seeded: TestClient) -> None:
    assert queue(seeded, FORGE, "selftest", "two_gpus")["gpus"] == 2
    assert queue(seeded, FORGE, "selftest", "smoke")["gpus"] == 0
    assert queue(seeded, FORGE, "forge", "full")["gpus"] == 1


def test_a_job_needing_two_gpus_is_leased_only_to_a_worker_with_two(seeded: TestClient) -> None:
    small_key, big_key = new_key(), new_key()
    register(seeded, "one-gpu", small_key)
    register(seeded, "two-gpus", big_key)
    pair = queue(seeded, FORGE, "selftest", "two_gpus")  # the oldest job
    single = queue(seeded, FORGE, "selftest", "crash")  # one GPU
    small, big = job_client(seeded, small_key), job_client(seeded, big_key)
    leased = small.lease(["selftest"], gpus=1)
    assert leased is not None and leased["job"]["job_id"] == single["job_id"]
    assert small.lease(["selftest"], gpus=1) is None  # the pair job is not for it
    assert small.lease(["selftest"]) is None  # a worker that says nothing has one GPU
    assert seeded.get(f"/api/jobs/{pair['job_id']}").json()["state"] == "queued"
    leased = big.lease(["selftest"], gpus=2)
    assert leased is not None
    assert (leased["job"]["job_id"], leased["job"]["gpus"]) == (pair["job_id"], 2)
    assert leased["job"]["leased_by"] == "two-gpus"


def test_a_worker_with_more_gpus_takes_smaller_jobs_too(seeded: TestClient) -> None:
    key = new_key()
    register(seeded, "eight", key)
    job = queue(seeded, FORGE, "selftest", "crash")
    leased = job_client(seeded, key).lease(["selftest"], gpus=8)
    assert leased is not None and leased["job"]["job_id"] == job["job_id"]


@pytest.mark.parametrize("gpus", [-1, 5000, "two", 1.5])
def test_a_malformed_gpu_count_in_a_lease_is_refused(seeded: TestClient, gpus: object) -> None:
    key = new_key()
    register(seeded, "w1", key)
    queue(seeded, FORGE, "selftest", "crash")
    worker = job_client(seeded, key)
    with pytest.raises(JobAPIError) as info:
        worker._post("/api/jobs/lease", {"claims": ["selftest"], "gpus": gpus})
    assert info.value.status == 422
    assert worker.lease(["selftest"]) is not None  # nothing was leased by the refused call


# --- the worker ------------------------------------------------------------------------------


def test_one_gpu_runs_the_module_and_several_run_it_under_torchrun(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    module = ["replication.claims.selftest", "--profile", "two_gpus", "--out", str(out)]
    one = claim_command("selftest", "two_gpus", out, gpus=1, python="py")
    assert one == ["py", "-m", *module]
    four = claim_command("selftest", "two_gpus", out, gpus=4, python="py")
    assert four == [
        "py",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=4",
        "-m",
        *module,
    ]
    with pytest.raises(ValueError, match="unknown claim"):
        claim_command("nope", "smoke", out)


def test_the_worker_runs_a_two_gpu_claim_as_two_processes(tmp_path: Path) -> None:
    """torchrun really starts two ranks (the selftest needs no GPU); rank 0 writes the result."""
    outcome = run_claim(
        "selftest", "two_gpus", tmp_path, time_limit_s=120, gpus=2, python=sys.executable
    )
    assert outcome.error is None, outcome.log_tail
    assert outcome.result is not None
    assert outcome.result["figures"]["world_size"] == "2"
    assert json.loads((tmp_path / "result.json").read_text()) == outcome.result


def test_the_signed_environment_says_how_many_gpus_the_run_used() -> None:
    env = {"gpu_count": "2", "torch": "2.11.0"}
    assert run_environment(env, {"gpus": 2})["gpus_used"] == "2"
    assert run_environment(env, {})["gpus_used"] == "1"  # an older registry sends no count
    assert run_environment(env, {"gpus": 0})["gpus_used"] == "0"  # a CPU (smoke) job used none
    assert job_gpus({"gpus": 0}) == 0
    assert env == {"gpu_count": "2", "torch": "2.11.0"}


def test_the_worker_advertises_its_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITH_WORKER_GPUS", "4")
    assert advertised_gpus(None) == 4
    assert advertised_gpus(2) == 2  # the flag wins
    monkeypatch.delenv("PITH_WORKER_GPUS")
    monkeypatch.setattr("replication.environment.collect", lambda: {"gpu_count": "0"})
    assert advertised_gpus(None) == 1  # no GPU found: single-device jobs, as before
    with pytest.raises(ValueError):
        advertised_gpus(-1)
    args = build_parser().parse_args(["run", "--server", "http://x", "--key", "k", "--gpus", "2"])
    assert args.gpus == 2
