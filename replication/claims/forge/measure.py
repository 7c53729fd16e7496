"""FORGE's figures (see spec.py for the claim and its checks): exactness and the autocast step
on every profile; on ``full`` (a CUDA GPU) memory, speed (each optimizer eager and captured,
timed interleaved; T=512 in several processes), the fused kernel alone and same-run ceilings.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from kernels.runtime.ceilings import Ceilings, measure_ceilings
from replication.claims import base
from replication.claims.common import environment_figures
from replication.claims.judge import dec

from .spec import KERNEL_TOKENS, MEMORY_TOKENS, SPEED_PROCESSES, SPEED_TOKENS
from .workload import SpeedRun


@dataclass(frozen=True)
class Profile:
    width: int
    depth: int
    exact_tokens: int
    exact_steps: int
    tokens: tuple[int, ...]  # speed
    memory_tokens: int
    iters: int  # timed rounds of the interleaved speed comparison
    warmup: int
    processes: int  # processes measuring T=512 (this one and processes - 1 spawned)
    kernel_tokens: tuple[int, ...]
    extras: bool  # bf16-weight figures


PROFILE = {
    "smoke": Profile(48, 3, 24, 5, (), 0, 0, 0, 0, (), False),
    "full": Profile(
        4096, 8, 512, 20, SPEED_TOKENS, MEMORY_TOKENS, 30, 5, SPEED_PROCESSES, KERNEL_TOKENS, True
    ),
}
SPAWN_TIMEOUT_S = 150.0
# the arms of the main process: the judged four and, reported, the optimizer-in-backward hook
MAIN_ARMS = ("forge_eager", "forge_graph", "fused_eager", "fused_graph", "hook_eager")


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


def bf16_weights_figures(run: SpeedRun) -> dict[str, float | int | str]:
    """The bf16-weights run's figures (eager arms): backward + step, as these names meant
    before the speed run also timed whole steps, and FORGE's speedup on it."""
    t = run.tokens
    f: dict[str, float | int | str] = {}
    ms = {a: tm.backward_step_ms for a, tm in run.timings.items() if tm.backward_step_ms}
    for arm, value in ms.items():
        f[f"speed_bf16_weights_T{t}_{arm}_ms"] = value
    for arm, err in run.errors.items():
        f[f"speed_error_bf16_weights_T{t}_{arm}"] = err
    if "fused_eager" in ms and "forge_eager" in ms:
        f[f"speedup_vs_fused_bf16_weights_T{t}"] = ms["fused_eager"] / ms["forge_eager"]
    return f


def speed_figures(run: SpeedRun) -> dict[str, float | int | str]:
    """One token count's figures: every arm's backward + step and whole step (forward
    included), the host's issue time; the ratios between arms (backward + step); the judged
    speedup (the faster FORGE arm's backward + step against the faster torch arm's) where all
    four arms were timed, and the same on whole steps (reported)."""
    t = run.tokens
    f: dict[str, float | int | str] = {}
    for arm, tm in run.timings.items():
        f[f"speed_step_T{t}_{arm}_ms"] = tm.step_ms
        if tm.backward_step_ms is not None:
            f[f"speed_backward_step_T{t}_{arm}_ms"] = tm.backward_step_ms
        f[f"host_issue_step_T{t}_{arm}_ms"] = tm.host_ms
    for arm, err in run.errors.items():
        f[f"speed_error_T{t}_{arm}"] = err
    ms = {a: tm.backward_step_ms for a, tm in run.timings.items() if tm.backward_step_ms}
    for name, slower, faster in (
        (f"speedup_eager_vs_eager_T{t}", "fused_eager", "forge_eager"),
        (f"speedup_graph_vs_graph_T{t}", "fused_graph", "forge_graph"),
        (f"graph_gain_T{t}_forge", "forge_eager", "forge_graph"),
        (f"graph_gain_T{t}_fused", "fused_eager", "fused_graph"),
    ):
        if slower in ms and faster in ms:
            f[name] = ms[slower] / ms[faster]
    forge, fused = run.best_ms("forge"), run.best_ms("fused")
    if forge is not None:
        f[f"speed_backward_step_T{t}_forge_best_ms"] = forge
        if "hook_eager" in ms:
            f[f"speedup_vs_hook_T{t}"] = ms["hook_eager"] / forge
    if fused is not None:
        f[f"speed_backward_step_T{t}_fused_best_ms"] = fused
    if forge is not None and fused is not None:
        f[f"speedup_vs_fused_T{t}"] = fused / forge
    whole = run.speedup_vs_fused("step")
    if whole is not None:
        f[f"speedup_vs_fused_whole_step_T{t}"] = whole
    return f


def _spaced(values: list[float | None]) -> str:
    return " ".join("none" if v is None else dec(v, 4) for v in values)


def processes_figures(
    t: int, runs: list[dict], failed: list[str], expected: int
) -> dict[str, float | int | str]:
    """The distribution over processes of the judged speedup at `t` (each run as
    ``SpeedRun.as_json``, this process's first). min, median and max, and
    ``speedup_vs_fused_T<t>`` (the median), only when every one of `expected` processes
    measured all four arms: a missing process leaves the gating figure unwritten."""
    from .workload import ARMS

    speedups = [r.get("speedup_vs_fused") for r in runs]
    f: dict[str, float | int | str] = {
        f"speed_processes_T{t}": len(runs),
        f"speed_processes_T{t}_failed": len(failed),
        f"speedup_vs_fused_T{t}_per_process": _spaced(speedups),
    }
    for arm in ARMS:
        f[f"speed_step_T{t}_{arm}_ms_per_process"] = _spaced(
            [r.get("step_ms", {}).get(arm) for r in runs]
        )
    measured = [x for x in speedups if x is not None]
    if len(measured) == expected and not failed:
        f[f"speedup_vs_fused_T{t}_min"] = min(measured)
        f[f"speedup_vs_fused_T{t}_median"] = statistics.median(measured)
        f[f"speedup_vs_fused_T{t}_max"] = max(measured)
        f[f"speedup_vs_fused_T{t}"] = statistics.median(measured)
    return f


def speed_in_processes(p: Profile, t: int, first: dict) -> dict[str, float | int | str]:
    """`first` (this process's run at `t`) and ``p.processes - 1`` more, each measured by its
    own process one after the other (the GPU otherwise idle), summarised."""
    from . import speed
    from .workload import ARMS

    runs, failed = [first], []
    for i in range(1, p.processes):
        base.phase(f"speed-T{t}-process-{i + 1}-of-{p.processes}")
        try:
            run = speed.spawn(
                tokens=t,
                width=p.width,
                depth=p.depth,
                iters=p.iters,
                warmup=p.warmup,
                arms=ARMS,
                timeout_s=SPAWN_TIMEOUT_S,
            )
        except RuntimeError as exc:
            failed.append(str(exc))
            _log(f"speed process {i + 1}: {exc}")
            continue
        runs.append(run)
        _log(f"speed T={t} process {i + 1} (pid {run.get('pid')}): {run}")
    return processes_figures(t, runs, failed, p.processes)


def kernel_figures(t: int, width: int, ceilings: Ceilings) -> dict[str, float]:
    """The fused kernel alone at `t` (``workload.kernel_timings``) and its ratios to the
    unfused sequence and to cuBLAS's dW GEMM alone."""
    from . import workload

    kt = workload.kernel_timings(t, width, ceilings=ceilings)
    out = {f"kernel_T{t}_{k}": v for k, v in kt.items()}
    out[f"kernel_T{t}_unfused_over_fused"] = kt["unfused_ms"] / kt["fused_ms"]
    out[f"kernel_T{t}_cublas_dw_over_fused"] = kt["cublas_dw_ms"] / kt["fused_ms"]
    return out


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

        from . import workload

        for t in p.tokens:
            base.phase(f"speed-T{t}")
            run = workload.speed_run(t, p.width, p.depth, MAIN_ARMS, iters=p.iters, warmup=p.warmup)
            _log_tuning()
            figures.update(speed_figures(run))
            _log(f"speed T={t}: {run}")
            if t == SPEED_TOKENS[0] and p.processes > 1:
                figures.pop(f"speedup_vs_fused_T{t}", None)  # the processes' median replaces it
                figures.update(speed_in_processes(p, t, run.as_json()))

        base.phase("kernel-alone")
        for t in p.kernel_tokens:
            kt = kernel_figures(t, p.width, ceilings)
            _log_tuning()
            figures.update(kt)
            _log(f"kernel T={t}: {kt}")

        if p.extras:
            base.phase("speed-bf16-weights")
            run = workload.speed_run(
                512,
                p.width,
                p.depth,
                ("forge_eager", "fused_eager"),
                iters=p.iters,
                warmup=p.warmup,
                autocast=None,
                dtype=torch.bfloat16,
            )
            _log_tuning()
            figures.update(bf16_weights_figures(run))
            _log(f"speed bf16 weights: {run}")

    figures["wall_s"] = time.monotonic() - started
    return figures
