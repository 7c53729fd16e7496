"""FORGE's linear layer as `torch.library` custom ops, so `torch.compile(model)` trains it.

Under `torch.compile` a FORGE-managed `nn.Linear` calls `forge::linear` (y = x·Wᵀ + b, the
autocast cast done inside). Its registered backward calls `forge::linear_backward`, which
computes dX from the old W and steps W through the optimizer's fused kernel. Both ops are opaque
to the compiler (fake kernels give their shapes): the host work of a step (step counts, the
group's scalars, the direct launch) runs as in eager mode, when the compiled graph calls the op.

How the update is declared — why W is not in `mutates_args`. Declaring the backward op as
mutating `weight` makes AOTAutograd functionalize it: the op gets W, and the joint graph ends
with `weight.copy_(new W)` into the forward input, a Parameter that requires grad. torch 2.13
traces that copy under `no_grad` (and checks at run time that the backward is not under
`create_graph`); torch 2.11 (the GPU image) does not, and the trace fails with "a leaf Variable
that requires grad is being used in an in-place operation". So the compiler is told the truth
at the level it can act on: the backward op *reads* W (for dX) and updates the layer's state
through its slot id, outside the graph's view, the way an optimizer's own kernels do. What the
compiler must still know is that the op has an effect, else it drops a call whose outputs are
unused (a first layer without bias: no dX, no db) and may move it freely; that is what
`update_token` is for: a zero-size tensor per layer (`_Slot.update_token`), an input of the
forward op saved for the backward, which the backward op declares as mutated. It does not
require grad, so AOTAutograd keeps its (empty) copy-back in the backward graph on 2.11 and 2.13
alike, and the op stays in the graph. Ordering needs nothing more: the op is the only reader of
a managed W in the backward (a managed weight belongs to one linear, `optim._eligible`), and
inside the op dX is queued before the update on the same stream, or taken from the kernel's
bf16 copy of the old W. Not covered: a loss that also reads a managed weight elsewhere in the
same compiled graph (an L2 term) may read the new W, the update being out of the compiler's
sight; in eager mode autograd's version check catches such a read after the update. A
torch-version switch was not needed.

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


def update_token(weight: torch.Tensor) -> torch.Tensor:
    """The zero-size stand-in for a layer's W and optimizer states in a compiled graph."""
    return torch.empty(0, device=weight.device)


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
    token: torch.Tensor,
    slot: int,
    cast: torch.dtype | None,
) -> torch.Tensor:
    """y = x·Wᵀ + b (in `cast` when autocast was on where the op was traced); `token` is only
    carried to the backward."""
    with torch.autocast(x.device.type, enabled=False):
        return F.linear(*_cast_inputs(x, weight, bias, cast))


@linear.register_fake
def _(x, weight, bias, token, slot, cast):
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=cast or x.dtype)


@torch.library.custom_op("forge::linear_backward", mutates_args={"token"})
def linear_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    token: torch.Tensor,
    slot: int,
    cast: torch.dtype | None,
    needs_dx: bool,
    bias_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dX, db) of `forge::linear`, stepping the slot's W in place through its fused kernel.

    `weight` is read for dX only; the update goes to the parameter the optimizer owns (the
    tensor the graph passed in as `weight`). `token` is declared mutated and left empty (see
    the module docstring). Without a gradient to return, dX or db is an empty tensor (a custom
    op returns tensors).
    """
    owner = _slot(slot)
    owner.check_can_update()
    x_c, w_c, _ = _cast_inputs(x, weight, None, cast)
    if cast == torch.bfloat16 and weight.dtype == torch.float32:
        w_c = None  # the kernel writes the old W in bf16 for dX (as ForgeLinearFunction)
    dx, db = fused_backward(
        owner, dy, x_c, w_c, tuple(weight.shape), x.dtype, bias_dtype, needs_dx,
        bias_dtype is not None,
    )  # fmt: skip
    # Two empties, not one twice: a custom op's outputs must not alias each other.
    return (dy.new_empty(0) if dx is None else dx), (dy.new_empty(0) if db is None else db)


@linear_backward.register_fake
def _(dy, x, weight, token, slot, cast, needs_dx, bias_dtype):
    dx = x.new_empty(x.shape) if needs_dx else dy.new_empty(0)
    db = dy.new_empty((weight.shape[0],), dtype=bias_dtype) if bias_dtype else dy.new_empty(0)
    return dx, db


def _setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x, weight, bias, token, slot, cast = inputs
    ctx.save_for_backward(x, weight, token)
    ctx.slot = slot
    ctx.cast = cast
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
    x, weight, token = ctx.saved_tensors
    needs_dx, needs_db = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
    dx, db = torch.ops.forge.linear_backward(
        dy, x, weight, token, ctx.slot, ctx.cast, needs_dx, ctx.bias_dtype if needs_db else None
    )
    return (dx if needs_dx else None), None, (db if needs_db else None), None, None, None


linear.register_autograd(_backward, setup_context=_setup_context)


def compiled_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    token: torch.Tensor,
    op_id: int,
) -> torch.Tensor:
    """The managed layer's forward inside a `torch.compile`d region (`_Slot.forward`)."""
    device = x.device.type
    cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if not (torch.is_grad_enabled() and weight.requires_grad):
        with torch.autocast(device, enabled=False):
            return F.linear(*_cast_inputs(x, weight, bias, cast))
    return torch.ops.forge.linear(x, weight, bias, token, op_id, cast)
