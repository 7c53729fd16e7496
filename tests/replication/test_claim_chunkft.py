"""The ChunkFT claim: its smoke profile end to end (CPU, kernels through the interpreter), the
result's shape, and the spec's registration."""

from __future__ import annotations

import json

import pytest

import replication.claims.chunkft.spec as spec_module
from replication.claims.base import run_claim
from replication.claims.chunkft.spec import SPEC
from replication.claims.judge import RESULT_VERSION
from replication.claims.registry import CLAIMS, claim_module


@pytest.fixture(scope="module")
def smoke() -> dict:
    return run_claim(SPEC, "smoke")


def test_identity_and_registry() -> None:
    assert SPEC.claim_id == "chunkft" and SPEC.paper_ref == "arxiv:2605.21177"
    assert SPEC.profiles == ("smoke", "full")
    assert CLAIMS["chunkft"] is SPEC
    assert claim_module("chunkft") == "replication.claims.chunkft"
    gpu_only = {c.name for c in SPEC.checks if c.profiles == ("full",)}
    assert {"mem_7b_cycle_peak_gb", "offload_hidden_fraction"} <= gpu_only
    gating = {c.name for c in SPEC.checks if c.gating}
    assert gating == {
        "exact_one_chunk_bitwise",
        "exact_one_chunk_vs_torch_adamw",
        "exact_four_chunks_slice_grad_rel_err",
        "quality_loss_ratio",
        "mem_7b_cycle_peak_gb",
    }


def test_the_statement_says_the_rule_its_torch_adamw_check_judges() -> None:
    """The signed statement and the module's docstring name the bound-ratio rule the gating
    check applies (against a float64 run, 2x torch's own fp32 error), not a bare 1e-5."""
    (check,) = [c for c in SPEC.checks if c.name == "exact_one_chunk_vs_torch_adamw"]
    assert check.gating and check.figure.endswith("_bound_ratio")
    assert (check.op, check.target) == ("<=", 1.0)
    docstring = " ".join((spec_module.__doc__ or "").split())
    for text in (SPEC.statement, docstring):
        assert "float64" in text and "2x" in text and "1e-6" in text
        assert "AdamW's within 1e-5" not in text


def test_smoke_result_shape(smoke: dict) -> None:
    assert smoke["result_version"] == RESULT_VERSION
    assert smoke["claim_id"] == "chunkft" and smoke["profile"] == "smoke"
    assert smoke["verdict"] == "inconclusive"  # toy sizes decide nothing
    assert all(isinstance(v, str) for v in smoke["figures"].values())
    names = {c["name"] for c in smoke["checks"]}
    assert names == {
        "exact_one_chunk_bitwise",
        "exact_one_chunk_vs_torch_adamw",
        "exact_four_chunks_slice_grad_rel_err",
        "quality_loss_ratio",
    }  # the memory and offload checks are GPU-only
    json.dumps(smoke)


def test_smoke_figures_are_measurements(smoke: dict) -> None:
    f = smoke["figures"]
    checks = {c["name"]: c for c in smoke["checks"]}
    # numerics pass at toy sizes too: one chunk is bitwise the unchunked run, slices match
    assert checks["exact_one_chunk_bitwise"]["passed"] is True
    assert f["exact_one_chunk_max_abs_diff"] == "0"
    assert float(f["exact_one_chunk_weights_moved_rel"]) > 1e-4  # the steps did train
    assert checks["exact_four_chunks_slice_grad_rel_err"]["passed"] is True
    assert f["quality_seeds"] == "2" and f["quality_chunks"] == "4"
    ratio = float(f["quality_loss_ratio"])
    seeds = [float(f[f"quality_seed{s}_loss_ratio"]) for s in (0, 1)]
    assert abs(ratio - sum(seeds) / 2) < 1e-4
    # two seeds: the standard error of their mean is half their distance (the judge's rule)
    assert float(f["quality_loss_ratio_sem"]) == pytest.approx(
        abs(seeds[0] - seeds[1]) / 2, abs=2e-6
    )
    # against torch's own AdamW, not only against our unchunked kernels
    assert checks["exact_one_chunk_vs_torch_adamw"]["passed"] is True
    assert 0 <= float(f["exact_one_chunk_vs_torch_adamw_bound_ratio"]) <= 1.0
    # fp32 against fp32: about ulp(W)/|update|, ~1e-5 (1.3e-5 with transformers 5.24); the
    # judged figure is the bound ratio above, against float64
    assert 0 <= float(f["exact_one_chunk_vs_torch_adamw_update_rel_err"]) <= 1e-4
    assert int(f["quality_seed0_chunkft_steps"]) == 4 * int(f["quality_seed0_adamw_steps"])


def test_the_torch_adamw_check_catches_a_different_update(monkeypatch) -> None:
    """The reference is torch.optim.AdamW itself (fp32 and float64): when it is given other
    betas than ChunkFT uses, the smoke profile's figures leave their bands (the check can
    fail), while torch's own fp32 run stays close to its float64 one."""
    import functools

    import torch

    from replication.claims.chunkft import measure

    honest = measure.exactness(measure.PROFILE["smoke"], torch.device("cpu"))
    assert honest["exact_one_chunk_vs_torch_adamw_update_rel_err"] <= 1e-4  # fp32 noise: ~1e-5
    assert honest["exact_one_chunk_vs_torch_adamw_bound_ratio"] <= 1.0
    assert honest["exact_torch_adamw_fp32_vs_adamw64_update_rel_err"] < 1e-4
    other = functools.partial(torch.optim.AdamW, betas=(0.8, 0.99))
    monkeypatch.setattr(torch.optim, "AdamW", other)
    changed = measure.exactness(measure.PROFILE["smoke"], torch.device("cpu"))
    assert changed["exact_one_chunk_vs_torch_adamw_update_rel_err"] > 1e-3
    assert changed["exact_one_chunk_vs_torch_adamw_bound_ratio"] > 10.0
    assert changed["exact_torch_adamw_fp32_vs_adamw64_update_rel_err"] < 1e-4
    assert changed["exact_one_chunk_max_abs_diff"] == 0.0  # our two paths still agree
