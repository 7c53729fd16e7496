"""The autograd side: a linear layer whose backward updates its own weight instead of grading it.

`ForgeLinearFunction` computes y = x·Wᵀ + b; its backward returns dX (with the old W) and the
bias gradient, and hands dY and X to its `WeightSlot`, which runs the fused step. It returns no
gradient for W, so W never gets a `.grad`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F


class WeightSlot(Protocol):
    """What the backward needs from the optimizer that owns a weight."""

    def check_can_update(self) -> None:
        """Raise if the weight was already stepped since the last opt.step()."""

    def fused_update(
        self, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None = None
    ) -> None:
        """Update the weight in place from dY [T, N] and X [T, K] (writing the old W, bf16,
        into `w_old_out` when given)."""


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for this device, or None outside autocast."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


class ForgeLinearFunction(torch.autograd.Function):
    """y = x·Wᵀ + b, with the optimizer step for W fused into the weight-gradient GEMM.

    Under bf16 autocast with fp32 weights, the forward's bf16 copy of W is not kept for the
    backward (autocast would keep it): the fused kernel writes the pre-update W in bf16 as it
    updates, and dX is computed from that, so no weight copy lives between forward and backward.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        slot: WeightSlot,
    ) -> torch.Tensor:
        cast = _autocast_dtype(x.device.type)
        with torch.autocast(x.device.type, enabled=False):
            if cast is not None:
                # As autocast would: the GEMMs read low-precision copies of x and W.
                x_c, w_c = x.to(cast), weight.to(cast)
                b_c = bias.to(cast) if bias is not None else None
            else:
                x_c, w_c, b_c = x, weight, bias
            y = F.linear(x_c, w_c, b_c)
        ctx.old_w_from_kernel = w_c is not weight and cast == torch.bfloat16
        if ctx.old_w_from_kernel:
            ctx.save_for_backward(x_c)
        else:
            ctx.save_for_backward(x_c, w_c)
        ctx.slot = slot
        ctx.x_dtype = x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.w_shape = weight.shape
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, None, Any, None]:  # type: ignore[override]
        # Runs once per layer per step on the host: every op skipped when not needed counts
        # (2-D inputs need no reshapes, matching dtypes no casts).
        slot = ctx.slot
        slot.check_can_update()  # before autograd's own check of the saved (old) weight
        x_c, *rest = ctx.saved_tensors
        n_out, n_in = ctx.w_shape
        flat = x_c.dim() == 2
        dy2 = dy if dy.dim() == 2 else dy.reshape(-1, n_out)
        if dy2.dtype != x_c.dtype:
            dy2 = dy2.to(x_c.dtype)
        if not dy2.is_contiguous():
            dy2 = dy2.contiguous()
        x2 = x_c if flat else x_c.reshape(-1, n_in)
        needs_dx, needs_db = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        db = None
        if needs_db:
            db = dy2.sum(0, dtype=torch.float32).to(ctx.bias_dtype)
        dx = None
        if ctx.old_w_from_kernel:
            if needs_dx:
                w_old = torch.empty((n_out, n_in), dtype=torch.bfloat16, device=dy2.device)
                slot.fused_update(dy2, x2, w_old)
                dx = torch.mm(dy2, w_old)  # the old W, as the fused kernel found it
            else:
                slot.fused_update(dy2, x2)
        else:
            if needs_dx:
                # Queued before the update on the same stream: dX = dY·W uses the old W.
                dx = torch.mm(dy2, rest[0])
            slot.fused_update(dy2, x2)
        if dx is not None:
            if not flat:
                dx = dx.reshape(*x_c.shape[:-1], n_in)
            if dx.dtype != ctx.x_dtype:
                dx = dx.to(ctx.x_dtype)
        return dx, None, db, None


def forge_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, slot: WeightSlot
) -> torch.Tensor:
    """F.linear whose backward steps `weight` through `slot` (plain F.linear without grad)."""
    if not (torch.is_grad_enabled() and weight.requires_grad):
        return F.linear(x, weight, bias)
    return ForgeLinearFunction.apply(x, weight, bias, slot)
