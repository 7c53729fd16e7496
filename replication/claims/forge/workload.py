"""FORGE's measured workload, shared by the claim and the benchmarks: the 8 × Linear stack,
the three ways to run AdamW on it, and the timings the claim reports (over the runtime's one
timing harness and same-run ceilings).

- "forge": `ForgeAdamW`, the update fused into the weight-gradient GEMM (no dW tensor);
- "fused": `torch.optim.AdamW(fused=True)` after a backward that materialises every gradient;
- "hook": PyTorch's optimizer-in-backward recipe, a fused AdamW per parameter run from
  `register_post_accumulate_grad_hook`, freeing each gradient as soon as it is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from kernels.forge.launch import forge_linear_step_
from kernels.forge.optim import ForgeAdamW
from kernels.forge.rules import Rule, StepScalars
from kernels.runtime import timing
from kernels.runtime.ceilings import Ceilings, measure_ceilings

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
