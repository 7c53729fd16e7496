"""The FORGE claim's speed comparison on the CPU: arms timed interleaved, the judged speedup
(each side's faster arm), the distribution over processes and how the judge reads it, and a
real spawned measuring process (toy sizes, the kernel through Triton's interpreter)."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from replication.claims.forge import speed
from replication.claims.forge.measure import (
    bf16_weights_figures,
    processes_figures,
    speed_figures,
)
from replication.claims.forge.spec import SPEC, SPEED_PROCESSES
from replication.claims.forge.workload import ARMS, Arm, ArmTiming, SpeedRun, time_interleaved
from replication.claims.judge import judge

CPU = torch.device("cpu")


def sleeping_arm(name: str, calls: list[str], forward_s: float | None, rest_s: float) -> Arm:
    """An arm whose forward and rest sleep: known lower bounds for every timing."""

    def forward() -> torch.Tensor:
        calls.append(f"{name}.forward")
        time.sleep(forward_s or 0.0)
        return torch.zeros(())

    def rest(loss: torch.Tensor | None) -> None:
        calls.append(f"{name}.rest")
        assert (loss is None) == (forward_s is None)  # rest gets what forward returned
        time.sleep(rest_s)

    return Arm(name, None if forward_s is None else forward, rest)


def test_arms_run_in_turn_every_round_and_each_part_is_timed() -> None:
    calls: list[str] = []
    arms = [
        sleeping_arm("eager", calls, forward_s=0.004, rest_s=0.006),
        sleeping_arm("replay", calls, forward_s=None, rest_s=0.008),
    ]
    out = time_interleaved(arms, iters=3, warmup=2, device=CPU)
    # A B, A B, ...: warm-up rounds included, the arms alternate
    assert calls == ["eager.forward", "eager.rest", "replay.rest"] * 5
    eager, replay = out["eager"], out["replay"]
    assert eager.samples == replay.samples == 3
    assert eager.step_ms >= 10 and eager.host_ms >= 10
    assert 6 <= eager.backward_step_ms < eager.step_ms  # from the end of forward
    assert replay.backward_step_ms is None  # a replay has no forward of its own
    assert replay.step_ms >= 8


FORWARD_MS = 0.5  # the same forward on every arm (what the whole-step ratio dilutes)


def timings(**backward_step_ms: float) -> dict[str, ArmTiming]:
    return {arm: ArmTiming(ms + FORWARD_MS, ms, ms, 3) for arm, ms in backward_step_ms.items()}


def test_the_judged_speedup_is_each_sides_faster_backward_and_step() -> None:
    # torch is faster eager, FORGE captured: the faster of each side is compared
    run = SpeedRun(
        2048, timings(forge_eager=3.0, forge_graph=2.0, fused_eager=2.5, fused_graph=2.6), {}
    )
    assert run.speedup_vs_fused() == pytest.approx(2.5 / 2.0)
    # whole steps (forward included) are reported, not judged: the ratio moves toward 1
    assert run.speedup_vs_fused("step") == pytest.approx(3.0 / 2.5)
    f = speed_figures(run)
    assert f["speedup_vs_fused_T2048"] == pytest.approx(1.25)
    assert f["speedup_vs_fused_whole_step_T2048"] == pytest.approx(1.2)
    assert f["speedup_eager_vs_eager_T2048"] == pytest.approx(2.5 / 3.0)
    assert f["speedup_graph_vs_graph_T2048"] == pytest.approx(2.6 / 2.0)
    assert f["graph_gain_T2048_forge"] == pytest.approx(1.5)
    assert f["speed_step_T2048_forge_graph_ms"] == 2.5
    assert f["speed_backward_step_T2048_forge_graph_ms"] == 2.0
    assert f["speed_backward_step_T2048_forge_best_ms"] == 2.0
    assert "speedup_vs_hook_T2048" not in f  # no hook arm was timed


def test_the_bf16_weights_figures_time_backward_and_step() -> None:
    """Their names meant backward + step before the speed run timed whole steps: they keep
    that meaning (the forward, the same on both arms, would dilute the ratio)."""
    run = SpeedRun(512, timings(forge_eager=2.0, fused_eager=3.0), {})
    f = bf16_weights_figures(run)
    assert f["speed_bf16_weights_T512_forge_eager_ms"] == 2.0
    assert f["speed_bf16_weights_T512_fused_eager_ms"] == 3.0
    assert f["speedup_vs_fused_bf16_weights_T512"] == pytest.approx(1.5)
    failed = bf16_weights_figures(SpeedRun(512, timings(fused_eager=3.0), {"forge_eager": "x"}))
    assert failed["speed_error_bf16_weights_T512_forge_eager"] == "x"
    assert "speedup_vs_fused_bf16_weights_T512" not in failed


def test_an_arm_timed_whole_gives_no_backward_step_to_judge() -> None:
    run = SpeedRun(
        512,
        {
            **timings(forge_eager=3.0, forge_graph=2.0, fused_eager=2.5),
            "fused_graph": ArmTiming(2.6, None, 2.6, 3),
        },
        {},
    )
    assert run.best_ms("fused") is None and run.speedup_vs_fused() is None
    assert run.best_ms("fused", "step") == pytest.approx(2.6)


def test_without_both_arms_of_a_side_there_is_no_judged_speedup() -> None:
    run = SpeedRun(
        512,
        timings(forge_eager=3.0, forge_graph=2.0, fused_eager=2.5),
        {"fused_graph": "RuntimeError: capture failed"},
    )
    assert run.best_ms("fused") is None and run.speedup_vs_fused() is None
    f = speed_figures(run)
    assert "speedup_vs_fused_T512" not in f
    assert f["speed_error_T512_fused_graph"] == "RuntimeError: capture failed"
    assert run.as_json()["speedup_vs_fused"] is None


def passing_figures() -> dict[str, float]:
    """A figure for every gating check of the full profile, on its passing side."""
    figures: dict[str, float] = {}
    for c in SPEC.checks_for("full"):
        if c.gating:
            figures[c.figure] = c.target + 1.0 if c.op.startswith(">") else c.target / 2
    return figures


def process_runs(speedups: list[float]) -> list[dict]:
    return [
        {"speedup_vs_fused": s, "step_ms": {arm: 1.0 + i for i, arm in enumerate(ARMS)}}
        for s in speedups
    ]


def test_t512_is_gated_on_the_slowest_process() -> None:
    assert SPEED_PROCESSES == 5
    speedups = [1.31, 1.40, 1.24, 1.35, 1.29]
    f = processes_figures(512, process_runs(speedups), [], SPEED_PROCESSES)
    assert f["speedup_vs_fused_T512_min"] == 1.24 and f["speedup_vs_fused_T512_max"] == 1.40
    assert f["speedup_vs_fused_T512_median"] == f["speedup_vs_fused_T512"] == 1.31
    assert f["speedup_vs_fused_T512_per_process"] == "1.31 1.4 1.24 1.35 1.29"
    assert f["speed_step_T512_forge_graph_ms_per_process"] == "2 2 2 2 2"
    figures = {**passing_figures(), **f}
    result = judge(SPEC, "full", figures)
    assert result["verdict"] == "not_replicated"  # one process in five below 1.25
    failed = [c["name"] for c in result["checks"] if c["gating"] and not c["passed"]]
    assert failed == ["speedup_vs_fused_adamw_T512_min_of_5_processes"]

    f = processes_figures(512, process_runs([1.31, 1.40, 1.26, 1.35, 1.29]), [], SPEED_PROCESSES)
    assert judge(SPEC, "full", {**passing_figures(), **f})["verdict"] == "replicated"


def test_a_process_that_measured_nothing_leaves_t512_undecided() -> None:
    f = processes_figures(512, process_runs([1.4, 1.4, 1.4, 1.4]), ["exited 1"], SPEED_PROCESSES)
    assert f["speed_processes_T512"] == 4 and f["speed_processes_T512_failed"] == 1
    assert "speedup_vs_fused_T512_min" not in f and "speedup_vs_fused_T512" not in f
    figures = {**passing_figures(), **f}
    del figures["speedup_vs_fused_T512_min"]
    result = judge(SPEC, "full", figures)
    assert result["verdict"] == "inconclusive"
    assert "not measured: speedup_vs_fused_T512_min" in result["notes"]


@pytest.mark.parametrize("t", [2048, 8192])
def test_larger_batches_gate_on_no_slowdown(t: int) -> None:
    figures = {**passing_figures(), f"speedup_vs_fused_T{t}": 0.97}
    result = judge(SPEC, "full", figures)
    assert result["verdict"] == "not_replicated"
    check = next(c for c in result["checks"] if c["name"] == f"speedup_vs_fused_adamw_T{t}")
    assert check["gating"] and not check["passed"]


def test_a_spawned_process_measures_the_eager_arms_and_reports_the_rest() -> None:
    run = speed.spawn(
        tokens=8,
        width=16,
        depth=2,
        iters=2,
        warmup=1,
        arms=("forge_eager", "fused_eager", "fused_graph"),
        timeout_s=240,
    )
    assert run["device"] == "cpu" and run["tokens"] == 8
    assert set(run["step_ms"]) == {"forge_eager", "fused_eager"}
    assert all(ms > 0 for ms in run["step_ms"].values())
    assert all(0 < run["backward_step_ms"][a] <= run["step_ms"][a] for a in run["step_ms"])
    assert set(run["errors"]) == {"fused_graph"}  # no CUDA graph without CUDA
    assert run["speedup_vs_fused"] is None


def test_a_failing_process_is_an_error_with_its_reason() -> None:
    with pytest.raises(RuntimeError, match=r"(?s)exited 1.*negative dimension"):
        speed.spawn(
            tokens=-1,
            width=16,
            depth=1,
            iters=1,
            warmup=0,
            arms=("fused_eager",),
            timeout_s=240,
        )


def test_the_processes_phase_spawns_and_reads_what_each_measured() -> None:
    from replication.claims.forge.measure import PROFILE, speed_in_processes

    tiny = dataclasses.replace(PROFILE["smoke"], width=16, depth=1, iters=1, warmup=0, processes=2)
    first = process_runs([1.3])[0]
    f = speed_in_processes(tiny, 8, first)
    assert f["speed_processes_T8"] == 2 and f["speed_processes_T8_failed"] == 0
    # the spawned process ran on the CPU: its captured arms could not be built, so it has no
    # judged speedup, and the distribution (its gating minimum) is not written
    assert f["speedup_vs_fused_T8_per_process"] == "1.3 none"
    assert f["speed_step_T8_forge_eager_ms_per_process"].startswith("1 ")
    assert float(f["speed_step_T8_forge_eager_ms_per_process"].split()[1]) > 0
    assert f["speed_step_T8_forge_graph_ms_per_process"] == "2 none"
    assert "speedup_vs_fused_T8_min" not in f
