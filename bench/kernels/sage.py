"""Host cost of the SAGE step: what the CPU spends to issue one optimizer step.

A SAGE step on a 4096×4096 matrix is ~0.15 ms of GPU work in three launches; when the host needs
longer than that to issue them, the step is paced by the host. `host_path_cpu` measures the
host's part without a GPU: CPU tensors, the three kernels stubbed out by `launch_stubbed` (the
launch takes its arguments and does nothing), so everything around them runs for real — torch's
optimizer wrapper, the group loop, the plan's signature check and argument packing, or the
general path's checks, allocations and grid callables. Not included: Triton's own launcher
(its C argument parsing, and for the general path the autotuner and JIT binding, tens of µs a
launch on triton 3.6); the claim measures the whole issue time on the GPU host.

    python -m bench.kernels.sage --host-cpu
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import triton
from torch.optim import Optimizer

from bench.kernels.stubs import StubKernel, direct_launches_forced


@contextlib.contextmanager
def launch_stubbed() -> Iterator[None]:
    """Inside the block the SAGE kernels launch nothing and CPU tensors take the kernel path;
    for host timing only (nothing is computed)."""
    from kernels.sage import kernels as sk
    from kernels.sage import optim

    names = ("_sage_col_abs_sum_kernel", "_sage_scale_kernel", "_sage_apply_kernel")
    saved = {n: getattr(sk, n) for n in names}
    saved_interpreting = optim.interpreting
    config = triton.Config({"BLOCK_R": 32, "BLOCK_C": 128}, num_warps=4)
    for n in names:
        setattr(sk, n, StubKernel(list(saved[n].arg_names), config))
    optim.interpreting = lambda: True
    try:
        with direct_launches_forced():
            yield
    finally:
        for n, k in saved.items():
            setattr(sk, n, k)
        optim.interpreting = saved_interpreting


class _EmptyStep(Optimizer):
    """An optimizer whose step does nothing: torch's step wrapper (hooks, profiler label)."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__(params, {})

    def step(self, closure: Any = None) -> None:
        return None


def _params(n: int, shape: tuple[int, int], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ps = []
    for _ in range(n):
        p = torch.randn(shape, generator=gen).requires_grad_()
        p.grad = torch.randn(shape, generator=gen)
        ps.append(p)
    return ps


def host_path_cpu(
    shape: tuple[int, int] = (64, 48), n_params: int = 16, rounds: int = 7, iters: int = 200
) -> dict[str, float]:
    """Host µs of one step, launches stubbed, CPU tensors: the SAGE optimizer with one parameter
    and with `n_params` (the marginal cost per parameter), the general `sage_step_`, torch's
    optimizer wrapper alone, and torch's fused AdamW with one parameter (its host path plus a
    tiny CPU kernel). Best of `rounds` medians, the cases interleaved (the host is noisy)."""
    from kernels.sage import SAGE
    from kernels.sage.launch import sage_step_

    hyper = dict(lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
    general = dict(lr=1e-4, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01)
    with launch_stubbed():
        one = SAGE(_params(1, shape, 0), **hyper)
        many = SAGE(_params(n_params, shape, 1), **hyper)
        p = _params(1, shape, 2)[0]
        m, s_ema = torch.zeros_like(p), torch.zeros(shape[1])
        q = _params(1, shape, 3)
        adamw = torch.optim.AdamW(q, lr=1e-4, weight_decay=0.01, fused=True)
        empty = _EmptyStep(_params(1, shape, 4))
        cases: dict[str, Callable[[], object]] = {
            "sage_step_1_param": one.step,
            f"sage_step_{n_params}_params": many.step,
            "sage_step_general": lambda: sage_step_(p.data, p.grad, m, s_ema, 10, **general),
            "adamw_fused_cpu_step_1_param": adamw.step,
            "torch_optimizer_wrapper": empty.step,
        }
        best = dict.fromkeys(cases, float("inf"))
        for r in range(rounds + 1):
            for name, fn in cases.items():
                times = []
                for _ in range(iters):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                if r > 0:  # the first round warms up (and binds the plans)
                    best[name] = min(best[name], statistics.median(times) * 1e6)
    out = {f"{k}_us": v for k, v in best.items()}
    many_us, one_us = best[f"sage_step_{n_params}_params"], best["sage_step_1_param"]
    out["sage_per_param_us"] = (many_us - one_us) / (n_params - 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host-cpu", action="store_true", help="host path, launches stubbed")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if not args.host_cpu:
        ap.error("nothing to do: pass --host-cpu")
    res = host_path_cpu(rounds=args.rounds)
    for k, v in res.items():
        print(f"host-cpu {k}: {v:.1f}", flush=True)


if __name__ == "__main__":
    main()
