"""FORGE's figures (see spec.py for the claim and its checks): exactness and the autocast step
on every profile; on ``full`` (a CUDA GPU) memory, speed, the fused kernel alone and same-run
ceilings.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass

import torch

from kernels.runtime.ceilings import measure_ceilings
from replication.claims import base
from replication.claims.common import environment_figures

from .spec import MEMORY_TOKENS, SPEED_TOKENS


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
    "full": Profile(4096, 8, 512, 20, SPEED_TOKENS, MEMORY_TOKENS, 15, 3, True),
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
    from kernels.forge import reference
    from kernels.runtime.testing import rel_err

    from . import workload

    with reference.tf32_off():
        forge = workload.make_trainer(
            workload.linear_stack(p.width, p.depth, device, torch.float32, 0), "forge"
        )
        first = forge.model[0].weight.detach().clone()
        ref = workload.make_trainer(
            workload.linear_stack(p.width, p.depth, device, torch.float32, 0),
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
    from kernels.forge import ForgeAdamW
    from kernels.runtime.testing import rel_err

    from . import workload

    width, t = (p.width, p.memory_tokens) if p.memory_tokens else (p.width, p.exact_tokens)
    m1 = workload.linear_stack(width, 2, device, torch.float32, 3)
    m2 = workload.linear_stack(width, 2, device, torch.float32, 3)
    o1 = ForgeAdamW(m1, **workload.ADAMW)
    o2 = ForgeAdamW(m2, **workload.ADAMW, backend="reference")
    ((x, target),) = _batches(1, t, width, device, seed=2)
    for m, o in ((m1, o1), (m2, o2)):
        with torch.autocast(device, dtype=torch.bfloat16):
            out = m(x)
        workload.stack_loss(out, target).backward()
        o.step()
    return max(rel_err(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))


def memory(p: Profile, autocast: torch.dtype | None) -> dict[str, int]:
    from kernels.forge import reference

    from . import workload

    out = {}
    ((x, target),) = _batches(1, p.memory_tokens, p.width, "cuda", seed=4)
    for method in workload.METHODS:
        with reference.tf32_off():
            tr = workload.make_trainer(
                workload.linear_stack(p.width, p.depth, "cuda", torch.float32, 0),
                method,
                autocast=autocast,
            )
            out[method] = workload.peak_step_memory(tr, x, target)
        del tr
        gc.collect()
        torch.cuda.empty_cache()
    return out


def speed(
    p: Profile, t: int, *, autocast: torch.dtype | None, dtype: torch.dtype
) -> tuple[dict[str, float], dict[str, float]]:
    """Median GPU ms of backward + step for each method, and the CPU ms to issue it."""
    from . import workload

    batches = [(x.to(dtype), y) for x, y in _batches(2, t, p.width, "cuda", seed=t)]
    gpu_ms, cpu_ms = {}, {}
    for method in workload.METHODS:
        with workload.tf32(False):
            tr = workload.make_trainer(
                workload.linear_stack(p.width, p.depth, "cuda", dtype, 0), method, autocast=autocast
            )
            gpu_ms[method], cpu_ms[method] = workload.time_backward_step(
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


def measure(profile: str) -> dict[str, float | int | str]:
    """FORGE's figures at `profile` (``smoke`` or ``full``)."""
    if profile not in PROFILE:
        raise ValueError(f"unknown profile {profile!r}; known: {tuple(PROFILE)}")
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
    figures.update(environment_figures(torch.device(device)))

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

    base.phase("autocast-correctness")
    figures["autocast_bf16_step_rel_err_vs_reference"] = autocast_step_error(p, device)

    if gpu:
        base.phase("ceilings")
        ceilings = measure_ceilings(torch.device(device))
        figures.update(ceilings.figures())
        _log(f"ceilings: {ceilings}")

        mib = 2.0**20
        for label, ac in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
            base.phase(f"memory-{label}")
            mem = memory(p, ac)
            for m, b in mem.items():
                figures[f"mem_{label}_T{p.memory_tokens}_{m}_MiB"] = b / mib
            figures[f"mem_{label}_T{p.memory_tokens}_reduction_vs_fused"] = 1.0 - mem[
                "forge"
            ] / max(mem["fused"], 1)
            figures[f"mem_{label}_T{p.memory_tokens}_forge_over_hook"] = mem["forge"] / max(
                mem["hook"], 1
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

        base.phase("kernel-bandwidth")
        from . import workload

        for t in p.tokens:
            kt = workload.kernel_timings(t, p.width, ceilings=ceilings)
            _log_tuning()
            for k, v in kt.items():
                figures[f"kernel_T{t}_{k}"] = v
            figures[f"kernel_T{t}_unfused_over_fused"] = kt["unfused_ms"] / kt["fused_ms"]
            _log(f"kernel T={t}: {kt}")

        if p.extras:
            base.phase("speed-bf16-weights")
            sp, _ = speed(p, 512, autocast=None, dtype=torch.bfloat16)
            _log_tuning()
            for m, ms in sp.items():
                figures[f"speed_bf16_weights_T512_{m}_ms"] = ms
            figures["speedup_vs_fused_bf16_weights_T512"] = sp["fused"] / sp["forge"]
            _log(f"speed bf16 weights: {sp}")

    figures["wall_s"] = time.monotonic() - started
    return figures
