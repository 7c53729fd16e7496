"""Claim of arXiv 2606.22932 (FORGE): the optimizer step fused into the weight-gradient GEMM.

The paper: folding AdamW into backward, one dW tile at a time in registers, is exact in full
precision, "more than halves the memory of an optimizer step" and is ~1.5x faster at the small
batches of fine-tuning. Measured here on a stack of 8 × Linear(4096, 4096) (no bias, so every
parameter is a fused weight), AdamW (lr 1e-4, wd 0.01), against torch's fused AdamW with
materialised gradients and against PyTorch's optimizer-in-backward hook, in one process:

1. Exactness: fp32 weights, TF32 off, 20 steps at T=512; ForgeAdamW against
   torch.optim.AdamW(foreach=False): weights within 1e-5 relative, losses within 1e-3.
2. Memory: the step's peak `max_memory_allocated` (forward + backward + update) above what lived
   before the forward (weights, states, batch), at T=512, in fp32 and under bf16 autocast.
   Targets: at least 50% below fused AdamW's, and below the hook's.
3. Speed: backward + step, median of CUDA-event timings, at T ∈ {512, 2048, 8192}. Precision
   choice, stated: bf16 autocast on every side (bf16 GEMM operands, fp32 accumulation, fp32
   master weights and fp32 AdamW states), the usual fine-tuning set-up. Target: ≥ 1.25x fused
   AdamW at T=512 (1.5x the paper's, reported). Also reported: the fused kernel alone on one
   layer (GB/s against 3.0 TB/s, time against cuBLAS dW + cast + fused AdamW), the host's time
   to issue each backward + step, and bf16 weights with stochastic rounding at T=512.

``smoke`` runs the exactness and autocast checks at toy sizes on the CPU (the kernel through
Triton's interpreter) in seconds; with no GPU to measure memory or speed its verdict is
"inconclusive".
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

if not os.path.exists("/dev/nvidiactl"):  # no GPU: the kernel runs in Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

from replication.claims import base
from replication.claims.base import Check, claim_result, main_for

CLAIM_ID = "forge"
PAPER = "arxiv:2606.22932"
PROFILES = ("smoke", "h100")

STATEMENT = (
    "FORGE's fused AdamW (update applied to each weight-gradient tile in registers, no gradient "
    "tensor) matches torch AdamW within 1e-5 relative in fp32 over 20 steps; on 8 x "
    "Linear(4096, 4096) at T=512 its step's peak memory is at least 50% below torch fused "
    "AdamW's and below the optimizer-in-backward hook's, and backward+step is at least 1.25x "
    "faster than torch fused AdamW (bf16 autocast, fp32 weights and states on every side)."
)


@dataclass(frozen=True)
class Profile:
    width: int
    depth: int
    exact_tokens: int
    exact_steps: int
    tokens: tuple[int, ...]  # speed
    memory_tokens: int
    iters: int
    warmup: int
    extras: bool  # bf16-weight figures


PROFILE = {
    "smoke": Profile(48, 3, 24, 5, (), 0, 0, 0, False),
    "h100": Profile(4096, 8, 512, 20, (512, 2048, 8192), 512, 15, 3, True),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _batches(n: int, t: int, width: int, device: str, seed: int) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator(device=device).manual_seed(seed)
    return [
        (
            torch.randn(t, width, device=device, generator=g),
            torch.randn(t, width, device=device, generator=g),
        )
        for _ in range(n)
    ]


def exactness(p: Profile, device: str) -> dict[str, float]:
    """ForgeAdamW vs torch AdamW(foreach=False), fp32, TF32 off: worst relative differences."""
    from kernels.forge import bench, reference
    from kernels.forge.testing import rel_err

    with reference.tf32_off():
        forge = bench.make_trainer(
            bench.linear_stack(p.width, p.depth, device, torch.float32, 0), "forge"
        )
        first = forge.model[0].weight.detach().clone()
        ref = bench.make_trainer(
            bench.linear_stack(p.width, p.depth, device, torch.float32, 0),
            "fused",
            foreach_reference=True,
        )
        worst_loss = 0.0
        for x, target in _batches(p.exact_steps, p.exact_tokens, p.width, device, seed=1):
            lf = forge.iteration(x, target)
            lr_ = ref.iteration(x, target)
            worst_loss = max(worst_loss, abs(lf - lr_) / abs(lr_))
        worst_w = max(
            rel_err(a, b)
            for a, b in zip(forge.model.parameters(), ref.model.parameters(), strict=True)
        )
        moved = rel_err(ref.model[0].weight, first)  # how far training moved the weights
    return {"weight_rel_err": worst_w, "loss_rel_diff": worst_loss, "weights_moved_rel": moved}


def autocast_step_error(p: Profile, device: str) -> float:
    """One fused step under bf16 autocast against the reference backend (same inputs)."""
    from kernels.forge import ForgeAdamW, bench
    from kernels.forge.testing import rel_err

    width, t = (p.width, p.memory_tokens) if p.memory_tokens else (p.width, p.exact_tokens)
    m1 = bench.linear_stack(width, 2, device, torch.float32, 3)
    m2 = bench.linear_stack(width, 2, device, torch.float32, 3)
    o1 = ForgeAdamW(m1, **bench.ADAMW)
    o2 = ForgeAdamW(m2, **bench.ADAMW, backend="reference")
    ((x, target),) = _batches(1, t, width, device, seed=2)
    for m, o in ((m1, o1), (m2, o2)):
        with torch.autocast(device, dtype=torch.bfloat16):
            out = m(x)
        bench.stack_loss(out, target).backward()
        o.step()
    return max(rel_err(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))


def memory(p: Profile, autocast: torch.dtype | None) -> dict[str, int]:
    from kernels.forge import bench, reference

    out = {}
    ((x, target),) = _batches(1, p.memory_tokens, p.width, "cuda", seed=4)
    for method in bench.METHODS:
        with reference.tf32_off():
            tr = bench.make_trainer(
                bench.linear_stack(p.width, p.depth, "cuda", torch.float32, 0),
                method,
                autocast=autocast,
            )
            out[method] = bench.peak_step_memory(tr, x, target)
        del tr
        gc.collect()
        torch.cuda.empty_cache()
    return out


def speed(
    p: Profile, t: int, *, autocast: torch.dtype | None, dtype: torch.dtype
) -> tuple[dict[str, float], dict[str, float]]:
    """Median GPU ms of backward + step for each method, and the CPU ms to issue it."""
    from kernels.forge import bench

    batches = [(x.to(dtype), y) for x, y in _batches(2, t, p.width, "cuda", seed=t)]
    gpu_ms, cpu_ms = {}, {}
    for method in bench.METHODS:
        with bench.tf32(False):
            tr = bench.make_trainer(
                bench.linear_stack(p.width, p.depth, "cuda", dtype, 0), method, autocast=autocast
            )
            gpu_ms[method], cpu_ms[method] = bench.time_backward_step(
                tr, batches, p.iters, p.warmup
            )
        del tr
        gc.collect()
        torch.cuda.empty_cache()
    return gpu_ms, cpu_ms


def _log_tuning() -> None:
    """Log what the tuner measured for the fused kernel (the log, not the figures)."""
    from kernels.forge.launch import TUNE_LOG

    while TUNE_LOG:
        entry = TUNE_LOG.pop(0)
        _log(f"tuned {entry.get('key')}: best {entry.get('best')}")
        for name, ms in sorted(entry.get("times_ms", {}).items(), key=lambda kv: kv[1]):
            _log(f"    {name}: {ms:.4f} ms")
        if "error" in entry:
            _log(f"    {entry['config']}: {entry['error'][:300]}")


def run(profile: str) -> dict[str, Any]:
    if profile not in PROFILE:
        raise ValueError(f"unknown profile {profile!r}; known: {PROFILES}")
    p = PROFILE[profile]
    started = time.monotonic()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda" and profile != "smoke"
    figures: dict[str, float | int | str] = {
        "width": p.width,
        "depth": p.depth,
        "adamw_lr": "0.0001",
        "adamw_weight_decay": "0.01",
    }
    checks: list[Check] = []

    base.phase("exactness")
    ex = exactness(p, device)
    figures.update(
        {
            "exact_tokens": p.exact_tokens,
            "exact_steps": p.exact_steps,
            "exact_fp32_weight_rel_err_max": ex["weight_rel_err"],
            "exact_fp32_loss_rel_diff_max": ex["loss_rel_diff"],
            "exact_weights_moved_rel": ex["weights_moved_rel"],
        }
    )
    checks.append(Check("exact_fp32_weight_rel_err_after_steps", ex["weight_rel_err"], "<=", 1e-5))
    checks.append(Check("exact_fp32_loss_rel_diff_over_steps", ex["loss_rel_diff"], "<=", 1e-3))

    base.phase("autocast-correctness")
    err = autocast_step_error(p, device)
    figures["autocast_bf16_step_rel_err_vs_reference"] = err
    checks.append(Check("autocast_bf16_fused_step_rel_err_vs_reference", err, "<=", 1e-5))

    if gpu:
        mib = 2.0**20
        for label, ac in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
            base.phase(f"memory-{label}")
            mem = memory(p, ac)
            for m, b in mem.items():
                figures[f"mem_{label}_T{p.memory_tokens}_{m}_MiB"] = b / mib
            cut = 1.0 - mem["forge"] / max(mem["fused"], 1)
            over_hook = mem["forge"] / max(mem["hook"], 1)
            figures[f"mem_{label}_T{p.memory_tokens}_reduction_vs_fused"] = cut
            figures[f"mem_{label}_T{p.memory_tokens}_forge_over_hook"] = over_hook
            checks.append(
                Check(f"mem_{label}_T{p.memory_tokens}_reduction_vs_fused", cut, ">=", 0.5)
            )
            checks.append(
                Check(f"mem_{label}_T{p.memory_tokens}_forge_over_hook", over_hook, "<", 1.0)
            )
            _log(f"memory {label}: {mem}")

        for t in p.tokens:
            base.phase(f"speed-T{t}")
            sp, cpu = speed(p, t, autocast=torch.bfloat16, dtype=torch.float32)
            _log_tuning()
            for m, ms in sp.items():
                figures[f"speed_bf16_autocast_T{t}_{m}_ms"] = ms
                figures[f"host_issue_bf16_autocast_T{t}_{m}_ms"] = cpu[m]
                figures[f"host_issue_per_layer_bf16_autocast_T{t}_{m}_us"] = cpu[m] * 1e3 / p.depth
            figures[f"speedup_vs_fused_T{t}"] = sp["fused"] / sp["forge"]
            figures[f"speedup_vs_hook_T{t}"] = sp["hook"] / sp["forge"]
            _log(f"speed T={t}: gpu {sp} host {cpu}")
            if t == 512:
                checks.append(
                    Check("speedup_vs_fused_adamw_T512", sp["fused"] / sp["forge"], ">=", 1.25)
                )
                checks.append(
                    Check(
                        "speedup_vs_fused_adamw_T512_paper_goal",
                        sp["fused"] / sp["forge"],
                        ">=",
                        1.5,
                        gating=False,
                    )
                )
            else:
                checks.append(
                    Check(
                        f"speedup_vs_fused_adamw_T{t}",
                        sp["fused"] / sp["forge"],
                        ">=",
                        1.0,
                        gating=False,
                    )
                )

        base.phase("kernel-bandwidth")
        from kernels.forge import bench

        for t in p.tokens:
            kt = bench.kernel_timings(t, p.width)
            _log_tuning()
            for k, v in kt.items():
                figures[f"kernel_T{t}_{k}"] = v
            figures[f"kernel_T{t}_unfused_over_fused"] = kt["unfused_ms"] / kt["fused_ms"]
            _log(f"kernel T={t}: {kt}")
            if t == 512:
                frac = kt["fused_frac_of_3TBps"]
                checks.append(Check("kernel_T512_frac_of_3TBps", frac, ">=", 0.85, gating=False))
            checks.append(
                Check(
                    f"kernel_T{t}_unfused_over_fused_time",
                    kt["unfused_ms"] / kt["fused_ms"],
                    ">=",
                    0.9,
                    gating=False,
                )
            )

        if p.extras:
            base.phase("speed-bf16-weights")
            sp, _ = speed(p, 512, autocast=None, dtype=torch.bfloat16)
            _log_tuning()
            for m, ms in sp.items():
                figures[f"speed_bf16_weights_T512_{m}_ms"] = ms
            figures["speedup_vs_fused_bf16_weights_T512"] = sp["fused"] / sp["forge"]
            _log(f"speed bf16 weights: {sp}")

    figures["wall_s"] = time.monotonic() - started
    notes = (
        "Speed and memory on every side use the same model, batch and AdamW; speed is bf16 "
        "autocast (bf16 GEMM operands, fp32 weights and AdamW states), timed from the start of "
        "backward to the end of the optimizer step (CUDA events, median). 'bf16_weights' "
        "figures compare FORGE with bf16 weights, fp32 states and stochastic rounding against "
        "torch fused AdamW on bf16 parameters (bf16 states): reported, not judged. The stack's "
        "linears have no bias, so every parameter is fused. 'host_issue' figures are the host's "
        "ms to issue backward + step: where one is close to its GPU figure, that method's step "
        "is paced by the host (Python autograd and launches), not by the GPU."
    )
    if not gpu:
        notes = "smoke profile: toy sizes on the CPU, no memory or speed measured. " + notes
    return claim_result(
        claim_id=CLAIM_ID,
        paper=PAPER,
        profile=profile,
        statement=STATEMENT,
        checks=checks,
        figures=figures,
        conclusive=gpu,
        notes=notes,
    )


if __name__ == "__main__":
    main_for(run, PROFILES)
