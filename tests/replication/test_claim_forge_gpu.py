"""The FORGE claim's GPU speed phase at small sizes, so the lead's GPU run of the tests covers
what the full profile runs: the four arms (eager and captured, both optimizers) built, trained
and timed interleaved, and a spawned measuring process."""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

WIDTH, DEPTH, TOKENS = 512, 2, 256


def test_the_four_arms_are_built_and_timed() -> None:
    from replication.claims.forge.workload import ARMS, speed_run

    run = speed_run(TOKENS, WIDTH, DEPTH, (*ARMS, "hook_eager"), iters=3, warmup=1)
    assert run.errors == {}
    assert set(run.timings) == {*ARMS, "hook_eager"}
    for t in run.timings.values():
        assert t.samples == 3 and t.step_ms > 0 and t.host_ms > 0
        # captured arms replay forward and backward + step as two graphs: timed apart too
        assert t.backward_step_ms is not None and 0 < t.backward_step_ms < t.step_ms
    assert run.speedup_vs_fused() is not None and run.speedup_vs_fused() > 0


@pytest.mark.parametrize("arm", ["forge_graph", "fused_graph"])
def test_every_replay_of_a_captured_arm_is_a_training_step(arm: str) -> None:
    from replication.claims.forge.workload import make_arm

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(TOKENS, WIDTH, device="cuda", generator=g)
    target = torch.randn(TOKENS, WIDTH, device="cuda", generator=g)
    built = make_arm(arm, WIDTH, DEPTH, x, target)
    opt, _step = built.keep
    weights = [p for group in opt.param_groups for p in group["params"]]
    assert len(weights) == DEPTH
    for _ in range(2):
        before = [w.detach().clone() for w in weights]
        built.rest(None)
        torch.cuda.synchronize()
        assert all(not torch.equal(b, w) for b, w in zip(before, weights, strict=True))


def test_a_spawned_process_measures_all_four_arms() -> None:
    from replication.claims.forge import speed
    from replication.claims.forge.workload import ARMS

    run = speed.spawn(
        tokens=TOKENS, width=WIDTH, depth=DEPTH, iters=3, warmup=1, arms=ARMS, timeout_s=180
    )
    assert run["device"] == "cuda" and run["errors"] == {}
    assert set(run["step_ms"]) == set(ARMS)
    assert run["speedup_vs_fused"] > 0
