"""FORGE's linear layer as `torch.library` custom ops, so `torch.compile(model)` trains it.

Under `torch.compile` a FORGE-managed `nn.Linear` calls `forge::linear` (y = x·Wᵀ + b, the
autocast cast done inside). Its registered backward calls `forge::linear_backward`, which
computes dX with the old W and steps W through the optimizer's fused kernel: the op declares
that it mutates `weight`, so the compiler orders it after every read of the old W and writes
the new W back. Both ops are opaque to the compiler (fake kernels give their shapes): the host
work of a step (step counts, the group's scalars, the direct launch) runs as in eager mode,
when the compiled graph calls the op.

A slot (one managed layer) is named in the graph by an integer id (`register_slot`): a Python
object cannot be an op argument. Eager training keeps `ForgeLinearFunction`: a custom op's
dispatch costs host time per layer that the eager hot path does not pay.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import torch
import torch.nn.functional as F

from .launch import fused_backward

_SLOTS: dict[int, weakref.ref] = {}
_IDS = itertools.count()


def register_slot(slot: Any) -> int:
    """A new id naming `slot` (held weakly: a dropped optimizer's layers do not live on)."""
    op_id = next(_IDS)
    _SLOTS[op_id] = weakref.ref(slot, lambda _, i=op_id: _SLOTS.pop(i, None))
    return op_id


def _slot(op_id: int) -> Any:
    ref = _SLOTS.get(op_id)
    slot = ref() if ref is not None else None
    if slot is None:
        raise RuntimeError(f"FORGE: the layer of compiled op id {op_id} no longer exists")
    return slot


def _cast_inputs(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cast: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """x, W, b as the forward's GEMM reads them (autocast's low-precision copies when cast)."""
    if cast is None:
        return x, weight, bias
    return x.to(cast), weight.to(cast), bias.to(cast) if bias is not None else None


@torch.library.custom_op("forge::linear", mutates_args=())
def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    slot: int,
    cast: torch.dtype | None,
) -> torch.Tensor:
    """y = x·Wᵀ + b (in `cast` when autocast was on where the op was traced)."""
    with torch.autocast(x.device.type, enabled=False):
        return F.linear(*_cast_inputs(x, weight, bias, cast))


@linear.register_fake
def _(x, weight, bias, slot, cast):
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=cast or x.dtype)


@torch.library.custom_op("forge::linear_backward", mutates_args={"weight"})
def linear_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    slot: int,
    cast: torch.dtype | None,
    needs_dx: bool,
    bias_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dX, db) of `forge::linear`, stepping W in place through its optimizer's fused kernel.

    Without a gradient to return, dX or db is an empty tensor (a custom op returns tensors).
    `weight` may be a copy the compiler made of the parameter (when it could not update in
    place): the optimizer steps the parameter it owns, then the copy takes its value, so the
    compiler's write-back stores the new W.
    """
    owner = _slot(slot)
    owner.check_can_update()
    param = owner.param
    x_c, w_c, _ = _cast_inputs(x, weight, None, cast)
    if cast == torch.bfloat16 and weight.dtype == torch.float32:
        w_c = None  # the kernel writes the old W in bf16 for dX (as ForgeLinearFunction)
    dx, db = fused_backward(
        owner, dy, x_c, w_c, tuple(weight.shape), x.dtype, bias_dtype, needs_dx,
        bias_dtype is not None,
    )  # fmt: skip
    if weight.data_ptr() != param.data_ptr():
        weight.copy_(param)
    empty = dy.new_empty(0)
    return (empty if dx is None else dx), (empty if db is None else db)


@linear_backward.register_fake
def _(dy, x, weight, slot, cast, needs_dx, bias_dtype):
    dx = x.new_empty(x.shape) if needs_dx else dy.new_empty(0)
    db = dy.new_empty((weight.shape[0],), dtype=bias_dtype) if bias_dtype else dy.new_empty(0)
    return dx, db


def _setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x, weight, bias, slot, cast = inputs
    ctx.save_for_backward(x, weight)
    ctx.slot = slot
    ctx.cast = cast
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, None, Any, None, None]:
    x, weight = ctx.saved_tensors
    needs_dx, needs_db = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
    dx, db = torch.ops.forge.linear_backward(
        dy, x, weight, ctx.slot, ctx.cast, needs_dx, ctx.bias_dtype if needs_db else None
    )
    return (dx if needs_dx else None), None, (db if needs_db else None), None, None


linear.register_autograd(_backward, setup_context=_setup_context)


def compiled_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, op_id: int
) -> torch.Tensor:
    """The managed layer's forward inside a `torch.compile`d region (`_Slot.forward`)."""
    device = x.device.type
    cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if not (torch.is_grad_enabled() and weight.requires_grad):
        with torch.autocast(device, enabled=False):
            return F.linear(*_cast_inputs(x, weight, bias, cast))
    return torch.ops.forge.linear(x, weight, bias, op_id, cast)
