"""FORGE's measured workload, shared by the claim and the benchmarks: the 8 × Linear stack,
the ways to run AdamW on it, and the timings the claim reports (over the runtime's timing
harness and same-run ceilings).

- "forge": `ForgeAdamW`, the update fused into the weight-gradient GEMM (no dW tensor);
- "fused": `torch.optim.AdamW(fused=True)` after a backward that materialises every gradient;
- "hook": PyTorch's optimizer-in-backward recipe, a fused AdamW per parameter run from
  `register_post_accumulate_grad_hook`, freeing each gradient as soon as it is used.

FORGE and fused AdamW also run captured in CUDA graphs (`kernels.runtime.graphs.capture_step`
with `split=True`: the forward in one graph, backward + step in another, both optimizers built
with `capturable=True`), so neither is paced by the host; the arms are timed interleaved
(`time_interleaved`) so drift in clocks or host load hits every arm alike. The judged unit is
backward + step (what FORGE changes; the forward is the same on every side), timed on every arm
between a CUDA event after the forward and one after the step; the whole step is reported too.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kernels.forge.launch import forge_linear_step_
from kernels.forge.optim import ForgeAdamW
from kernels.forge.rules import Rule, StepScalars
from kernels.runtime import timing
from kernels.runtime.ceilings import Ceilings, measure_ceilings

METHODS = ("forge", "fused", "hook")
# The arms of the judged speed comparison: each optimizer eager and captured in a CUDA graph.
ARMS = ("forge_eager", "forge_graph", "fused_eager", "fused_graph")
ADAMW = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}


def linear_stack(
    width: int,
    depth: int,
    device: str,
    dtype: torch.dtype,
    seed: int,
    *,
    init_on_device: bool = False,
) -> nn.Module:
    """`depth` × Linear(width, width) without bias: every parameter is a fusable weight.

    Initialised on the CPU and moved (the weights the exactness and memory figures have always
    used), or with `init_on_device` drawn on `device` directly (seconds faster at 4096²: the
    speed arms, whose timings do not depend on the values)."""
    torch.manual_seed(seed)
    where = device if init_on_device else "cpu"
    layers = [nn.Linear(width, width, bias=False, device=where) for _ in range(depth)]
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

    def forward(i: int) -> torch.Tensor:
        x, target = batches[i % len(batches)]
        return trainer.forward_loss(x, target)

    def backward_step(loss: torch.Tensor) -> None:
        loss.backward()
        trainer.step()

    return timing.event_median_ms(forward, backward_step, iters=iters, warmup=warmup)


def peak_step_memory(trainer: Trainer, x: torch.Tensor, target: torch.Tensor) -> int:
    """Bytes of the step's peak (forward + backward + update) above what lived before it.

    One iteration first, so weights and optimizer states already exist; they count as "before".
    """
    trainer.iteration(x, target)
    return timing.peak_memory_bytes(lambda: trainer.iteration(x, target), x.device)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@dataclass
class Arm:
    """One way to run a training step, as `time_interleaved` times it: `forward()` then
    `rest(loss)`, so backward + step is timed apart from the forward (a captured arm replays its
    forward graph, then its backward + step graph); an arm without `forward` is timed whole."""

    name: str
    forward: Callable[[], torch.Tensor] | None
    rest: Callable[[Any], None]
    keep: object = None  # optimizer, trainer or captured graph, kept alive with the arm


@dataclass
class ArmTiming:
    """Medians over the timed rounds: the whole step's device ms, backward + step ms (None for
    an arm timed whole), and the host's ms to issue the step."""

    step_ms: float
    backward_step_ms: float | None
    host_ms: float
    samples: int


def eager_arm(name: str, trainer: Trainer, x: torch.Tensor, target: torch.Tensor) -> Arm:
    """`trainer`'s step as it is written (forward, backward, optimizer step, no sync)."""

    def rest(loss: torch.Tensor) -> None:
        loss.backward()
        trainer.step()

    return Arm(name, lambda: trainer.forward_loss(x, target), rest, trainer)


def graph_loss_fn(autocast: torch.dtype | None) -> Callable[..., torch.Tensor]:
    """`loss_fn(model, x, target)` for capture: the trainer's forward and loss, autocast's
    weight cache off (torch's graph recipe: cached casts must not outlive a capture)."""

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx = (
            torch.autocast(x.device.type, dtype=autocast, cache_enabled=False)
            if autocast is not None
            else contextlib.nullcontext()
        )
        with ctx:
            out = model(x)
        return stack_loss(out, target)

    return loss_fn


def capturable_optimizer(model: nn.Module, method: str) -> torch.optim.Optimizer:
    """The optimizer of `method` built to be captured: counters and lr on the device."""
    if method == "forge":
        return ForgeAdamW(model, **ADAMW, capturable=True)
    if method == "fused":
        return torch.optim.AdamW(model.parameters(), **ADAMW, fused=True, capturable=True)
    raise ValueError(f"no captured arm for method {method!r}")


def graph_arm(
    name: str,
    model: nn.Module,
    method: str,
    x: torch.Tensor,
    target: torch.Tensor,
    autocast: torch.dtype | None,
) -> Arm:
    """Forward, backward and `method`'s step captured once (``capture_step``, split: forward
    in one graph, backward + step in the other), then replayed one graph after the other.

    Each call replays on the batch captured: like the eager arms, whose batch already lies on
    the device, it copies no batch."""
    from kernels.runtime.graphs import capture_step

    opt = capturable_optimizer(model, method)
    step = capture_step(model, opt, graph_loss_fn(autocast), (x, target), warmup=3, split=True)
    return Arm(name, step.replay_forward, lambda _loss: step.replay_backward_step(), (opt, step))


def make_arm(
    name: str,
    width: int,
    depth: int,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    autocast: torch.dtype | None = torch.bfloat16,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Arm:
    """Arm `name` (``<method>_eager`` or ``<method>_graph``) on a fresh stack."""
    method, _, how = name.rpartition("_")
    if method not in METHODS or how not in ("eager", "graph"):
        raise ValueError(f"unknown arm {name!r}: <forge|fused|hook>_<eager|graph>")
    model = linear_stack(width, depth, str(x.device), dtype, seed, init_on_device=True)
    if how == "graph":
        return graph_arm(name, model, method, x, target, autocast)
    return eager_arm(name, make_trainer(model, method, autocast=autocast), x, target)


def time_interleaved(
    arms: Sequence[Arm], *, iters: int, warmup: int, device: torch.device
) -> dict[str, ArmTiming]:
    """Each arm's medians over `iters` rounds after `warmup`, the arms run in turn in every
    round (A B C D, A B C D, ...) so drift in clocks or host load hits them alike.

    Every timed step starts on an idle device (synchronised before): its time is what one step
    costs from issue to finish, bubbles included where the host issues slower than the device
    runs. CUDA events on a GPU; wall clock on the CPU (smoke sizes, the interpreter)."""
    cuda = device.type == "cuda"
    samples: dict[str, list[tuple[float, float | None, float]]] = {a.name: [] for a in arms}
    pending: list[tuple[str, list[torch.cuda.Event], float]] = []
    for i in range(warmup + iters):
        for arm in arms:
            timing.sync(device)
            events = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else []
            t0 = time.perf_counter()
            if cuda:
                events[0].record()
            loss = None
            t_mid = t0
            if arm.forward is not None:
                loss = arm.forward()
                t_mid = time.perf_counter()
                if cuda:
                    events[1].record()
            arm.rest(loss)
            issue_ms = (time.perf_counter() - t0) * 1e3
            if cuda:
                events[2].record()
            else:
                timing.sync(device)
            t_end = time.perf_counter()
            del loss
            if i < warmup:
                continue
            if cuda:  # events read once the last round is done
                pending.append(
                    (arm.name, events if arm.forward is not None else events[::2], issue_ms)
                )
            else:
                split = (t_end - t_mid) * 1e3 if arm.forward is not None else None
                samples[arm.name].append(((t_end - t0) * 1e3, split, issue_ms))
    timing.sync(device)
    for name, events, issue_ms in pending:
        start, *mid, end = events
        split = mid[0].elapsed_time(end) if mid else None
        samples[name].append((start.elapsed_time(end), split, issue_ms))
    out = {}
    for arm in arms:
        rows = samples[arm.name]
        steps = [r[0] for r in rows]
        splits = [r[1] for r in rows if r[1] is not None]
        out[arm.name] = ArmTiming(
            statistics.median(steps),
            statistics.median(splits) if splits else None,
            statistics.median(r[2] for r in rows),
            len(rows),
        )
    return out


@dataclass
class SpeedRun:
    """One token count's interleaved comparison: each arm's timing, and the arms that could
    not be built (name -> the error), which are left out of the timing."""

    tokens: int
    timings: dict[str, ArmTiming]
    errors: dict[str, str]

    def best_ms(self, method: str, unit: str = "backward_step") -> float | None:
        """The faster of `method`'s eager and captured backward + step (`unit="step"`: whole
        step). None when either was not timed or failed: the faster of two is then not known."""
        names = [f"{method}_eager", f"{method}_graph"]
        if any(n in self.errors or n not in self.timings for n in names):
            return None
        ms = [
            self.timings[n].backward_step_ms if unit == "backward_step" else self.timings[n].step_ms
            for n in names
        ]
        return None if any(m is None for m in ms) else min(ms)

    def speedup_vs_fused(self, unit: str = "backward_step") -> float | None:
        """FORGE's faster backward + step against torch fused AdamW's faster (the judged
        speedup); `unit="step"` compares whole steps (forward included)."""
        forge, fused = self.best_ms("forge", unit), self.best_ms("fused", unit)
        return None if forge is None or fused is None else fused / forge

    def as_json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "step_ms": {k: v.step_ms for k, v in self.timings.items()},
            "backward_step_ms": {
                k: v.backward_step_ms
                for k, v in self.timings.items()
                if v.backward_step_ms is not None
            },
            "host_issue_ms": {k: v.host_ms for k, v in self.timings.items()},
            "samples": {k: v.samples for k, v in self.timings.items()},
            "errors": self.errors,
            "speedup_vs_fused": self.speedup_vs_fused(),
            "speedup_vs_fused_whole_step": self.speedup_vs_fused("step"),
        }


def speed_run(
    tokens: int,
    width: int,
    depth: int,
    arms: Sequence[str] = ARMS,
    *,
    iters: int,
    warmup: int,
    device: str = "cuda",
    autocast: torch.dtype | None = torch.bfloat16,
    dtype: torch.dtype = torch.float32,
) -> SpeedRun:
    """The named arms on the same batch of `tokens` tokens, each on its own stack (same seed),
    timed interleaved; the stacks and graphs are freed before returning. An arm that cannot be
    built (e.g. capture on a machine without CUDA) is reported in `errors`, not raised."""
    g = torch.Generator(device=device).manual_seed(tokens)
    x = torch.randn(tokens, width, device=device, generator=g).to(dtype)
    target = torch.randn(tokens, width, device=device, generator=g)
    built: list[Arm] = []
    errors: dict[str, str] = {}
    with tf32(False):
        for name in arms:
            try:
                built.append(
                    make_arm(name, width, depth, x, target, autocast=autocast, dtype=dtype)
                )
            except Exception as exc:  # reported as the arm's error; the others still run
                errors[name] = f"{type(exc).__name__}: {exc}"[:500]
        timings = (
            time_interleaved(built, iters=iters, warmup=warmup, device=torch.device(device))
            if built
            else {}
        )
    built.clear()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return SpeedRun(tokens, timings, errors)


def fused_kernel_bytes(t: int, n: int, k: int, in_bytes: int, w_bytes: int = 4) -> int:
    """Bytes the fused AdamW kernel must move: W, m, v read and written, dY and X read once."""
    return n * k * 2 * (w_bytes + 8) + t * (n + k) * in_bytes


def kernel_timings(
    t: int, width: int, device: str = "cuda", *, ceilings: Ceilings | None = None
) -> dict[str, float]:
    """The fused kernel alone on one [width, width] layer (bf16 dY/X, fp32 W/m/v, writing the
    bf16 old W for dX, as under autocast), against the unfused sequence it replaces: cuBLAS dW
    in bf16, its cast to fp32, torch's fused AdamW."""
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
    dev = torch.device(device)
    ms_fused = timing.median_ms(fused, dev)
    ms_unfused = timing.median_ms(unfused, dev)
    ms_mm = timing.median_ms(lambda: torch.mm(dy.t(), x), dev)
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
