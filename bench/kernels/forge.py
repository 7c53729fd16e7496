"""FORGE benchmarks: training-step time, the step's peak memory, the fused kernel's bandwidth.

Three ways to run AdamW on the same model, timed in the same process:
- "forge": `ForgeAdamW`, the update fused into the weight-gradient GEMM (no dW tensor);
- "fused": `torch.optim.AdamW(fused=True)` after a backward that materialises every gradient;
- "hook": PyTorch's optimizer-in-backward recipe, a fused AdamW per parameter run from
  `register_post_accumulate_grad_hook`, freeing each gradient as soon as it is used.
FORGE and fused AdamW also run captured: the whole step in one CUDA graph, replayed
(`capturable=True`); the arms are timed interleaved, as the claim does.

`python -m bench.kernels.forge` prints a table for the 8 × Linear(4096, 4096) stack (CUDA): per
T, each arm's step (forward + backward + step), the speedup of FORGE's faster arm over torch's
faster arm, and the fused kernel alone against the same run's ceilings;
`--overhead` the host's costs (per launch, and per layer of backward + step, each method side by
side); `--host-cpu` the host path alone on a CPU-only machine (see `host_path_cpu`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from bench.kernels.stubs import StubKernel, direct_launches_forced
from kernels.forge.launch import LayerLauncher, forge_linear_step_
from kernels.forge.rules import Rule, StepScalars
from kernels.runtime.ceilings import measure_ceilings
from replication.claims.forge.workload import (
    ARMS,
    METHODS,
    Trainer,
    kernel_timings,
    linear_stack,
    make_trainer,
    speed_run,
    tf32,
    time_backward_step,
)


def profile_table(trainer: Trainer, x: torch.Tensor, target: torch.Tensor, rows: int = 12) -> str:
    """torch.profiler's table of one backward + step (after a warm-up iteration)."""
    from torch.profiler import ProfilerActivity, profile

    trainer.iteration(x, target)
    loss = trainer.forward_loss(x, target)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        loss.backward()
        trainer.step()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows)


def host_overhead(n: int = 300, width: int = 4096, depth: int = 8, tokens: int = 512) -> dict:
    """Host µs per call when the GPU work is negligible: the fused launch (general path, and a
    layer's bound `LayerLauncher`), a cuBLAS mm, and a whole forward + backward + step of a tiny
    8-layer stack under each method (CPU-paced by design). Then, at the real size (`depth` ×
    Linear(`width`), `tokens` tokens, bf16 autocast), each method's host issue time and GPU
    time of backward + step per layer, side by side: where host ≥ GPU the step is host-paced."""
    dev = "cuda"
    dy = torch.randn(64, 256, device=dev, dtype=torch.bfloat16)
    x = torch.randn(64, 256, device=dev, dtype=torch.bfloat16)
    w = torch.randn(256, 256, device=dev)
    st = [torch.zeros_like(w), torch.zeros_like(w)]
    sc = StepScalars.adamw(step=3, lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    out: dict[str, float] = {}

    def per_call(fn: Callable[[], object]) -> float:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        return (t1 - t0) / n * 1e6

    out["fused_launch_us"] = per_call(
        lambda: forge_linear_step_(dy, x, w, st, Rule.ADAMW, sc, tune=False, check=False)
    )
    layer = LayerLauncher(w, st, Rule.ADAMW, stochastic=True)
    args = sc.kernel_args()
    out["layer_launcher_us"] = per_call(lambda: layer(dy, x, sc, args, 0, "ieee", None))
    out["cublas_mm_us"] = per_call(lambda: torch.mm(dy.t(), x))
    for method in METHODS:
        model = linear_stack(256, 8, dev, torch.float32, 0)
        tr = make_trainer(model, method, autocast=torch.bfloat16)
        xb = torch.randn(64, 256, device=dev)

        def one(tr: Trainer = tr, xb: torch.Tensor = xb) -> None:
            tr.forward_loss(xb, xb).backward()
            tr.step()

        out[f"{method}_forward_backward_step_us"] = per_call(one)
    g = torch.Generator(device=dev).manual_seed(tokens)
    batches = [
        (
            torch.randn(tokens, width, device=dev, generator=g),
            torch.randn(tokens, width, device=dev, generator=g),
        )
        for _ in range(2)
    ]
    for method in METHODS:
        with tf32(False):
            tr = make_trainer(
                linear_stack(width, depth, dev, torch.float32, 0), method, autocast=torch.bfloat16
            )
            gpu_ms, host_ms = time_backward_step(tr, batches, iters=30, warmup=5)
        out[f"T{tokens}_{method}_host_issue_per_layer_us"] = host_ms * 1e3 / depth
        out[f"T{tokens}_{method}_gpu_per_layer_us"] = gpu_ms * 1e3 / depth
        del tr
        gc.collect()
        torch.cuda.empty_cache()
    return out


def host_overhead_line(figures: dict, tokens: int = 512, width: int = 4096, depth: int = 8) -> str:
    """The side-by-side line of `host_overhead`'s per-layer figures."""
    parts = [
        f"{m} {figures[f'T{tokens}_{m}_host_issue_per_layer_us']:.1f}"
        f" (GPU {figures[f'T{tokens}_{m}_gpu_per_layer_us']:.1f})"
        for m in METHODS
    ]
    return (
        f"host issue per layer, backward+step, T={tokens}, {depth} x Linear({width}, {width}),"
        f" bf16 autocast, µs: " + ", ".join(parts)
    )


@contextlib.contextmanager
def launch_stubbed() -> Iterator[None]:
    """Inside the block, the fused kernel's launch is a no-op taking the same arguments, and
    CPU tensors count as launchable: the whole host path around the kernel (autograd node,
    optimizer bookkeeping, launcher binding and argument packing) runs on a machine without a
    GPU, and without the interpreter's cost. Nothing is computed: for host timing only."""
    from kernels.forge import launch, optim

    saved = (
        launch._forge_linear_step_kernel,
        launch.triton_available,
        optim.triton_available,
        dict(launch._COMPILED),
    )
    launch._forge_linear_step_kernel = StubKernel()
    launch.triton_available = optim.triton_available = lambda device: True
    launch._COMPILED.clear()
    try:
        with direct_launches_forced():
            yield
    finally:
        (
            launch._forge_linear_step_kernel,
            launch.triton_available,
            optim.triton_available,
            compiled,
        ) = saved
        launch._COMPILED.clear()
        launch._COMPILED.update(compiled)


def host_path_cpu(
    width: int = 16, tokens: int = 8, depth: int = 8, rounds: int = 7, iters: int = 100
) -> dict[str, float]:
    """Host µs of one backward + step per method, on CPU tensors, FORGE's launch stubbed out
    (`launch_stubbed`): a GPU-free measure of the Python and autograd work around the kernel.
    Tiny layers keep the CPU's own matmuls (dX, and torch's dW) negligible; bf16 autocast as
    in the claim. Best of `rounds` medians, the methods interleaved (the host is noisy)."""
    best = dict.fromkeys(METHODS, float("inf"))
    with launch_stubbed():
        trainers = {}
        for method in METHODS:
            tr = make_trainer(
                linear_stack(width, depth, "cpu", torch.float32, 0), method, autocast=torch.bfloat16
            )
            trainers[method] = (tr, torch.randn(tokens, width), torch.randn(tokens, width))
        for r in range(rounds + 1):
            for method, (tr, xb, target) in trainers.items():
                times = []
                for _ in range(iters):
                    loss = tr.forward_loss(xb, target)
                    t0 = time.perf_counter()
                    loss.backward()
                    tr.step()
                    times.append(time.perf_counter() - t0)
                if r > 0:  # the first round warms up
                    best[method] = min(best[method], statistics.median(times) * 1e6)
    out = {}
    for method, us in best.items():
        out[f"{method}_backward_step_us"] = us
        out[f"{method}_per_layer_us"] = us / depth
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--tokens", type=int, nargs="+", default=[512, 2048, 8192])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler tables only")
    ap.add_argument("--overhead", action="store_true", help="print host costs only")
    ap.add_argument(
        "--host-cpu", action="store_true", help="host path on CPU tensors, launch stubbed"
    )
    args = ap.parse_args()
    if args.host_cpu:
        torch.set_num_threads(1)
        res = host_path_cpu(depth=args.depth)
        for k, v in res.items():
            print(f"host-cpu {k}: {v:.1f}", flush=True)
        print(
            "host-cpu per layer (backward+step, launch stubbed), µs: "
            + ", ".join(f"{m} {res[f'{m}_per_layer_us']:.1f}" for m in METHODS),
            flush=True,
        )
        return
    if args.overhead:
        res = host_overhead(width=args.width, depth=args.depth, tokens=args.tokens[0])
        for k, v in res.items():
            print(f"host {k}: {v:.1f}", flush=True)
        print(host_overhead_line(res, args.tokens[0], args.width, args.depth), flush=True)
        return
    if args.profile:
        for t in args.tokens:
            g = torch.Generator(device="cuda").manual_seed(t)
            x = torch.randn(t, args.width, device="cuda", generator=g)
            target = torch.randn(t, args.width, device="cuda", generator=g)
            for method in ("forge", "fused"):
                model = linear_stack(args.width, args.depth, "cuda", torch.float32, 0)
                tr = make_trainer(model, method, autocast=torch.bfloat16)
                print(f"--- {method}, T={t}, bf16 autocast: one backward + step", flush=True)
                print(profile_table(tr, x, target), flush=True)
                del tr, model
                torch.cuda.empty_cache()
        return
    ceilings = measure_ceilings(torch.device("cuda"))
    print(f"ceilings: {ceilings}", flush=True)
    arms = (*ARMS, "hook_eager")
    for t in args.tokens:
        run = speed_run(t, args.width, args.depth, arms, iters=args.iters, warmup=3)
        for arm, err in run.errors.items():
            print(f"T={t:5d}  {arm} failed: {err}", flush=True)
        steps = "  ".join(
            f"{arm} {tm.backward_step_ms:.3f}/{tm.step_ms:.3f}"
            for arm, tm in run.timings.items()
            if tm.backward_step_ms is not None
        )
        issue = "  ".join(f"{arm} {tm.host_ms:.3f}" for arm, tm in run.timings.items())
        speedup = run.speedup_vs_fused()
        judged = "n/a" if speedup is None else f"{speedup:.2f}x"
        print(
            f"T={t:5d}  backward+step/whole step ms: {steps}  speedup (faster vs faster) {judged}",
            flush=True,
        )
        print(f"T={t:5d}  host issue ms: {issue}", flush=True)
        k = kernel_timings(t, args.width, ceilings=ceilings)
        print(
            f"T={t:5d}  kernel {k['fused_ms']:.3f} ms: {k['fused_frac_of_copy']:.0%} of copy_,"
            f" {k['fused_frac_of_gemm']:.0%} of the bf16 GEMM ({k['fused_TFLOPs']:.0f} TFLOP/s);"
            f" cuBLAS dW {k['cublas_dw_ms']:.3f} ms, unfused {k['unfused_ms']:.3f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
