"""`forge.capture`: a FORGE training step captured in one CUDA graph.

FORGE steps each linear weight inside backward, so forward, backward and `opt.step()` together
are the whole step; captured (`kernels.runtime.graphs.capture_step`), it replays from one host
call, where eager FORGE issues a Python autograd node and a launch per layer. The optimizer
must be built with `capturable=True`: its step counts and scalars then live on the device and
the fused kernel reads them there, so each replay is the next step:

    opt = ForgeAdamW(model, lr=torch.tensor(1e-3, device="cuda"), capturable=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.99**s)  # fills the tensor lr
    step = capture(model, opt, lambda m, x, y: F.cross_entropy(m(x), y), (x0, y0))
    for x, y in batches:
        loss = step(x, y)
        sched.step()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kernels.runtime.graphs import CapturedStep, LossFn, capture_step

from .optim import ForgeOptimizer


def capture(
    model: nn.Module,
    optimizer: ForgeOptimizer,
    loss_fn: LossFn,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor,
    **kw: Any,
) -> CapturedStep:
    """`capture_step` for a FORGE optimizer built with `capturable=True` (keywords passed on)."""
    if not isinstance(optimizer, ForgeOptimizer):
        raise TypeError(f"capture takes a FORGE optimizer, not {type(optimizer).__name__}")
    if not optimizer.capturable:
        raise ValueError(
            f"{type(optimizer).__name__} was built with capturable=False: its step count and "
            "scalars live on the host, and a replay would repeat the captured step. Build it "
            "with capturable=True"
        )
    return capture_step(model, optimizer, loss_fn, example_inputs, **kw)
