"""The fp4 claim: its spec in the registry, its smoke profile end to end (CPU, well under a
minute), and how its seed-paired figures decide the verdict."""

from __future__ import annotations

import json
import math

import pytest

from replication.claims.base import run_claim
from replication.claims.fp4.measure import PROFILES, quality_figures
from replication.claims.fp4.spec import ARMS, SPEC
from replication.claims.judge import RESULT_VERSION, judge

GATING = {"eval_loss_fp4_full_over_bf16", "eval_loss_fp4_full_minus_fp4_direct"}


@pytest.fixture(scope="module")
def smoke() -> dict:
    return run_claim(SPEC, "smoke")


def test_spec_is_registered_with_two_profiles() -> None:
    from replication.claims.registry import CLAIMS, claim_module

    assert CLAIMS["fp4"] is SPEC
    assert claim_module("fp4") == "replication.claims.fp4"
    assert SPEC.paper_ref == "arxiv:2501.17116"
    assert SPEC.profiles == ("smoke", "full")
    gating = {c.name for c in SPEC.checks_for("full") if c.gating}
    assert gating == GATING


def test_smoke_result_shape(smoke: dict) -> None:
    assert smoke["result_version"] == RESULT_VERSION
    assert smoke["claim_id"] == "fp4" and smoke["profile"] == "smoke"
    assert smoke["verdict"] == "inconclusive"  # toy sizes decide nothing
    assert all(isinstance(v, str) for v in smoke["figures"].values())
    names = {c["name"] for c in smoke["checks"]}
    assert names >= GATING
    assert "quantizer_bf16_frac_of_copy" not in names  # a GPU-only check
    json.dumps(smoke)


def test_smoke_figures_are_measurements(smoke: dict) -> None:
    f = smoke["figures"]
    assert not [k for k in f if k.endswith("_error")], "a measurement raised"
    vocab = int(f["data_vocab_size"])
    for arm in ARMS:
        for seed in range(3):
            loss = float(f[f"quality_{arm}_eval_loss_seed{seed}"])
            assert 0.5 * math.log(vocab) < loss < 1.2 * math.log(vocab)  # two steps from random
    for name in ("cosine_direct", "cosine_clamped", "cosine_compensated"):
        assert 0.5 < float(f[name]) <= 1.0
    assert 0.0 < float(f["cosine_residual_nonzero_frac"]) < 0.05
    for case in ("dequant", "e4m3", "packed", "e4m3_clamp_residual"):
        assert float(f[f"speed_quant_{case}_ms"]) > 0
        assert float(f[f"speed_quant_{case}_frac_of_copy"]) > 0
    assert float(f["speed_fp8_gemm_tflops"]) > 0 and float(f["ceiling_copy_tbps"]) > 0


def test_the_fp8_gemm_is_set_against_the_runs_bf16_ceiling(smoke: dict) -> None:
    """The bf16 GEMM is the ceiling measured once in the run (same n), not measured again."""
    f = smoke["figures"]
    assert f["speed_bf16_gemm_tflops"] == f["ceiling_gemm_bf16_tflops"]
    assert f["speed_gemm_n"] == f["ceiling_gemm_n"] == str(PROFILES["smoke"].gemm_n)
    ratio = float(f["speed_fp8_gemm_tflops"]) / float(f["ceiling_gemm_bf16_tflops"])
    assert float(f["speed_fp8_over_bf16_gemm"]) == pytest.approx(ratio, rel=1e-4)


def test_calibration_fits_the_steps_to_the_time_left() -> None:
    """The full profile's step count: the profile's maximum when time is plenty, 30 when none
    is left; the calibration's per-arm step times are recorded."""
    import dataclasses
    import time

    import torch

    from replication.claims.fp4.measure import PROFILES, calibrate_steps
    from replication.data import load_shakespeare

    prof = dataclasses.replace(PROFILES["smoke"], steps=500)
    corpus = load_shakespeare()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = torch.device("cpu")
        steps, figures = calibrate_steps(prof, corpus, cpu, time.perf_counter() + 1e6)
        assert steps == 500
        assert all(float(figures[f"calibration_{arm}_ms_per_step"]) > 0 for arm in ARMS)
        steps, _ = calibrate_steps(prof, corpus, cpu, time.perf_counter())
        assert steps == 30
    finally:
        torch.set_num_threads(threads)


def _runs(values: list[float]) -> list[dict[str, float]]:
    return [{"eval_loss": v} for v in values]


def test_quality_figures_pair_the_seeds() -> None:
    """Ratio and difference are taken per seed, then averaged; spreads are standard errors."""
    f = quality_figures(
        {
            "bf16": _runs([2.0, 4.0, 2.0]),
            "fp4_direct": _runs([2.2, 4.3, 2.4]),
            "fp4_full": _runs([2.1, 4.0, 2.0]),
        }
    )
    assert f["quality_fp4_full_over_bf16_mean"] == pytest.approx((1.05 + 1 + 1) / 3)
    assert f["quality_fp4_full_minus_direct_mean"] == pytest.approx(-0.8 / 3)
    diffs = [-0.1, -0.3, -0.4]
    mean = sum(diffs) / 3
    sem = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2) / math.sqrt(3)
    assert f["quality_fp4_full_minus_direct_sem"] == pytest.approx(sem)
    assert f["quality_bf16_eval_loss_seed1"] == 4.0


@pytest.mark.parametrize(
    ("full", "direct", "verdict"),
    [
        ([2.04, 2.04, 2.04], [2.3, 2.31, 2.29], "replicated"),
        ([2.2, 2.2, 2.2], [2.3, 2.31, 2.29], "not_replicated"),  # 10% above bf16
        ([2.04, 2.04, 2.04], [2.0, 2.01, 2.0], "not_replicated"),  # not below direct
        ([2.04, 2.04, 2.04], [2.3, 1.9, 2.05], "inconclusive"),  # seeds straddle 0
    ],
)
def test_verdict_from_figures(full: list[float], direct: list[float], verdict: str) -> None:
    figures = quality_figures(
        {"bf16": _runs([2.0, 2.0, 2.0]), "fp4_direct": _runs(direct), "fp4_full": _runs(full)}
    )
    assert judge(SPEC, "full", figures)["verdict"] == verdict
