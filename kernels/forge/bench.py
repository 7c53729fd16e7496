"""FORGE benchmarks: backward+step time, the step's peak memory, the fused kernel's bandwidth.

Three ways to run AdamW on the same model, timed in the same process:
- "forge": `ForgeAdamW`, the update fused into the weight-gradient GEMM (no dW tensor);
- "fused": `torch.optim.AdamW(fused=True)` after a backward that materialises every gradient;
- "hook": PyTorch's optimizer-in-backward recipe, a fused AdamW per parameter run from
  `register_post_accumulate_grad_hook`, freeing each gradient as soon as it is used.

`python -m kernels.forge.bench` prints a table for the 8 × Linear(4096, 4096) stack (CUDA);
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
from dataclasses import dataclass

import torch
from torch import nn

from kernels.runtime.ceilings import Ceilings, measure_ceilings

from .launch import LayerLauncher, forge_linear_step_
from .optim import ForgeAdamW
from .rules import Rule, StepScalars

METHODS = ("forge", "fused", "hook")
ADAMW = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


def linear_stack(width: int, depth: int, device: str, dtype: torch.dtype, seed: int) -> nn.Module:
    """`depth` × Linear(width, width) without bias: every parameter is a fusable weight."""
    torch.manual_seed(seed)
    layers = [nn.Linear(width, width, bias=False) for _ in range(depth)]
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


def stack_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over features, averaged over tokens (in fp32)."""
    return (out.float() - target).square().sum(-1).mean()


@dataclass
class Trainer:
    """One model with one of the three AdamW set-ups, ready for `iteration()`."""

    model: nn.Module
    method: str
    step: Callable[[], None]
    autocast: torch.dtype | None
    keep: object = None  # optimizer(s) and hook handles kept alive

    def forward_loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx = (
            torch.autocast(x.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.model(x)
        return stack_loss(out, target)

    def iteration(self, x: torch.Tensor, target: torch.Tensor) -> float:
        loss = self.forward_loss(x, target)
        loss.backward()
        self.step()
        return loss.item()


def make_trainer(
    model: nn.Module,
    method: str,
    *,
    autocast: torch.dtype | None = None,
    foreach_reference: bool = False,
) -> Trainer:
    """Wrap `model` with AdamW the way `method` says (see the module docstring)."""
    if method == "forge":
        opt = ForgeAdamW(model, **ADAMW)

        def step() -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        return Trainer(model, method, step, autocast, opt)
    if method == "fused":
        kw = {"foreach": False} if foreach_reference else {"fused": True}
        opt_t = torch.optim.AdamW(model.parameters(), **ADAMW, **kw)

        def step_t() -> None:
            opt_t.step()
            opt_t.zero_grad(set_to_none=True)

        return Trainer(model, method, step_t, autocast, opt_t)
    if method == "hook":
        opts = {p: torch.optim.AdamW([p], **ADAMW, fused=True) for p in model.parameters()}

        def hook(p: torch.Tensor) -> None:
            opts[p].step()
            opts[p].zero_grad(set_to_none=True)

        handles = [p.register_post_accumulate_grad_hook(hook) for p in model.parameters()]
        return Trainer(model, method, lambda: None, autocast, (opts, handles))
    raise ValueError(f"unknown method {method!r}")


def time_backward_step(
    trainer: Trainer, batches: list[tuple[torch.Tensor, torch.Tensor]], iters: int, warmup: int
) -> tuple[float, float]:
    """Median ms of backward + optimizer step on the GPU (CUDA events; the forward runs before
    the start event), and median ms the CPU took to issue them: when the two are close, the
    step is paced by the host, not the GPU."""
    times = []
    cpu = []
    for i in range(warmup + iters):
        x, target = batches[i % len(batches)]
        loss = trainer.forward_loss(x, target)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        loss.backward()
        trainer.step()
        t1 = time.perf_counter()
        end.record()
        if i >= warmup:
            times.append((start, end))
            cpu.append((t1 - t0) * 1e3)
        del loss
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in times), statistics.median(cpu)


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


def peak_step_memory(trainer: Trainer, x: torch.Tensor, target: torch.Tensor) -> int:
    """Bytes of the step's peak (forward + backward + update) above what lived before it.

    One iteration first, so weights and optimizer states already exist; they count as "before".
    """
    trainer.iteration(x, target)
    torch.cuda.synchronize()
    gc.collect()  # nothing left over from earlier models may be freed inside the measurement
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    trainer.iteration(x, target)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def fused_kernel_bytes(t: int, n: int, k: int, in_bytes: int, w_bytes: int = 4) -> int:
    """Bytes the fused AdamW kernel must move: W, m, v read and written, dY and X read once."""
    return n * k * 2 * (w_bytes + 8) + t * (n + k) * in_bytes


def kernel_timings(
    t: int, width: int, device: str = "cuda", *, ceilings: Ceilings | None = None
) -> dict[str, float]:
    """The fused kernel alone on one [width, width] layer (bf16 dY/X, fp32 W/m/v, writing the
    bf16 old W for dX, as under autocast), against the unfused sequence it replaces: cuBLAS dW
    in bf16, its cast to fp32, torch's fused AdamW."""
    import triton.testing

    if ceilings is None:
        ceilings = measure_ceilings(torch.device(device))
    g = torch.Generator(device=device).manual_seed(t)
    dy = torch.randn(t, width, device=device, generator=g).bfloat16()
    x = torch.randn(t, width, device=device, generator=g).bfloat16()
    w = torch.randn(width, width, device=device, generator=g) * 0.02
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    sc = StepScalars.adamw(step=10, lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    old = torch.empty(width, width, device=device, dtype=torch.bfloat16)

    def fused() -> None:
        forge_linear_step_(dy, x, w, [m, v], Rule.ADAMW, sc, w_old_out=old)

    p = nn.Parameter(w.clone())
    opt = torch.optim.AdamW([p], lr=1e-6, fused=True)

    def unfused() -> None:
        p.grad = torch.mm(dy.t(), x).float()
        opt.step()

    fused()  # tune and compile outside the timing
    unfused()
    ms_fused = triton.testing.do_bench(fused, warmup=25, rep=100, return_mode="median")
    ms_unfused = triton.testing.do_bench(unfused, warmup=25, rep=100, return_mode="median")
    ms_mm = triton.testing.do_bench(
        lambda: torch.mm(dy.t(), x), warmup=25, rep=100, return_mode="median"
    )
    nbytes = fused_kernel_bytes(t, width, width, 2) + 2 * width * width  # + the bf16 old W
    return {
        "fused_ms": ms_fused,
        "unfused_ms": ms_unfused,
        "cublas_dw_ms": ms_mm,
        "fused_GBps": nbytes / ms_fused / 1e6,
        "fused_frac_of_copy": ceilings.frac_of_copy(nbytes, ms_fused),
        "fused_TFLOPs": 2 * t * width * width / ms_fused / 1e9,
        "fused_frac_of_gemm": ceilings.frac_of_gemm(2 * t * width * width, ms_fused),
    }


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
    from . import launch, optim

    class _NoKernel:  # stands for the compiled kernel the JIT returns
        packed_metadata = None
        function = 0

        @staticmethod
        def run(*args: object) -> None:
            return None

        def launch_metadata(self, *args: object) -> None:
            return None

    class _NoJit:  # stands for the JIT function: kernel[grid](...) returns the compiled kernel
        def __getitem__(self, grid: object) -> Callable[..., _NoKernel]:
            return lambda *args, **kwargs: _NoKernel()

    saved = (
        launch._forge_linear_step_kernel,
        launch.triton_available,
        optim.triton_available,
        launch._raw_stream,
        launch._FAST_LAUNCH["on"],
        dict(launch._COMPILED),
    )
    launch._forge_linear_step_kernel = _NoJit()
    launch.triton_available = optim.triton_available = lambda device: True
    launch._raw_stream = lambda index: 0
    launch._FAST_LAUNCH["on"] = True
    launch._COMPILED.clear()
    try:
        yield
    finally:
        (
            launch._forge_linear_step_kernel,
            launch.triton_available,
            optim.triton_available,
            launch._raw_stream,
            launch._FAST_LAUNCH["on"],
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
    rows = []
    for t in args.tokens:
        g = torch.Generator(device="cuda").manual_seed(t)
        batches = [
            (
                torch.randn(t, args.width, device="cuda", generator=g),
                torch.randn(t, args.width, device="cuda", generator=g),
            )
            for _ in range(2)
        ]
        row = {"T": t}
        for method in METHODS:
            model = linear_stack(args.width, args.depth, "cuda", torch.float32, 0)
            tr = make_trainer(model, method, autocast=torch.bfloat16)
            row[method] = time_backward_step(tr, batches, args.iters, 3)[0]
            del tr, model
            torch.cuda.empty_cache()
        row.update(kernel_timings(t, args.width))
        rows.append(row)
        print(
            f"T={t:5d}  forge {row['forge']:.3f} ms  fused {row['fused']:.3f}"
            f"  hook {row['hook']:.3f}"
            f"  speedup {row['fused'] / row['forge']:.2f}x  kernel {row['fused_ms']:.3f} ms"
            f" ({row['fused_frac_of_copy']:.0%} of copy_) vs unfused {row['unfused_ms']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
