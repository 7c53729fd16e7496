"""The FORGE claim: its smoke profile end to end, as a function and as the worker's script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replication.claims import CLAIM_MODULES
from replication.claims.base import run_claim
from replication.claims.forge.spec import SPEC
from replication.claims.judge import RESULT_VERSION, VERDICTS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke() -> dict:
    return run_claim(SPEC, "smoke")


def test_identity() -> None:
    assert SPEC.claim_id == "forge"
    assert SPEC.paper_ref == "arxiv:2606.22932"
    assert SPEC.profiles == ("smoke", "full")
    assert SPEC.canonical_profile("h100") == "full"  # the committed H100 records' profile
    assert CLAIM_MODULES["forge"] == "replication.claims.forge"


def test_smoke_result_is_well_formed(smoke: dict) -> None:
    assert smoke["result_version"] == RESULT_VERSION
    assert smoke["claim_id"] == "forge" and smoke["profile"] == "smoke"
    assert smoke["verdict"] in VERDICTS
    assert smoke["verdict"] == "inconclusive"  # toy sizes on a CPU decide nothing
    assert all(isinstance(v, str) for v in smoke["figures"].values())
    for c in smoke["checks"]:
        assert set(c) == {"name", "measured", "op", "target", "passed", "gating"}
        assert isinstance(c["measured"], str) and isinstance(c["target"], str)
        float(c["measured"]), float(c["target"])  # decimal strings
    names = {c["name"] for c in smoke["checks"]}
    assert {
        "exact_fp32_weight_rel_err_after_steps",
        "exact_fp32_loss_rel_diff_over_steps",
        "autocast_bf16_fused_step_rel_err_vs_reference",
    } <= names
    assert "smoke" in smoke["notes"].lower()
    json.dumps(smoke)


def test_smoke_figures_are_measurements(smoke: dict) -> None:
    f = smoke["figures"]
    # training moved the weights, and FORGE followed torch's AdamW along the way
    assert float(f["exact_weights_moved_rel"]) > 1e-4
    assert float(f["exact_fp32_weight_rel_err_max"]) <= 1e-5
    assert all(c["passed"] for c in smoke["checks"])


def test_runs_as_the_workers_script(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "replication.claims.forge", "--profile", "smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "::phase:: exactness" in proc.stderr
    result = json.loads(out.read_text())
    assert result["claim_id"] == "forge" and result["profile"] == "smoke"
