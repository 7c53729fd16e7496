"""FORGE under tensor parallelism: torch's own column- and row-parallel linears, the fused
update on each rank's shard.

`torch.distributed.tensor.parallel.parallelize_module` (ColwiseParallel / RowwiseParallel) makes
a linear layer's weight a DTensor sharded by output rows (Shard(0)) or input columns (Shard(1))
and wraps its forward in the input/output redistributions. With that weight the layer's dW tile
of each rank is dYₗᵀ·Xₗ on local tensors alone — the column-parallel layer's output shard and
its replicated input, the row-parallel layer's full dY and its input shard — so the optimizer
step stays in the GEMM's epilogue on the local shard and nothing about dW crosses ranks.

Use: parallelize the model first, then build the FORGE optimizer on it (the optimizer keeps the
DTensor weights it finds; `_Slot.forward` sends DTensor weights here). Optimizer states are
DTensors laid out like their weight, so `state_dict()` and `torch.distributed.checkpoint` see
the global tensors. fp32 weights match one process to rounding (the row-parallel forward sums
partial products across ranks); bf16 stochastic rounding draws its bits by local offset, so a
sharded run is a different (equally unbiased) draw.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

from . import reference
from .launch import ForgeLinearFunction, LayerLauncher, triton_available

if TYPE_CHECKING:
    from .optim import _Slot


def is_dtensor(t: Any) -> bool:
    """The tensor is a torch.distributed DTensor (a parallelized weight)."""
    return isinstance(t, DTensor)


def _layout(weight: DTensor) -> str:
    """'colwise' for output-row shards, 'rowwise' for input-column shards; refuses the rest."""
    placements = weight.placements
    if weight.device_mesh.ndim != 1 or len(placements) != 1:
        raise NotImplementedError("FORGE tensor parallelism takes a 1-D device mesh")
    p = placements[0]
    if isinstance(p, Shard) and p.dim in (0, -2):
        return "colwise"
    if isinstance(p, Shard) and p.dim in (1, -1):
        return "rowwise"
    raise NotImplementedError(
        f"FORGE: a weight placed {placements} is neither column- nor row-parallel "
        "(parallelize_module with ColwiseParallel or RowwiseParallel)"
    )


class _ShardSlot:
    """The WeightSlot the local ForgeLinearFunction reports to: the update runs on the shard."""

    __slots__ = ("slot",)

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot

    def check_can_update(self) -> None:
        self.slot.check_can_update()

    def fused_update(
        self, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None = None
    ) -> None:
        fused_update_local(self.slot, dy, x, w_old_out)


def _ensure_states(opt: Any, p: DTensor) -> dict[str, Any]:
    """The optimizer's state of a DTensor parameter, created as DTensors shaped like it (the
    optimizer's own `_advance` would allocate global-shaped plain tensors)."""
    state = opt.state[p]
    if not state:
        state["step"] = 0
        for name in opt.rule.state_names:
            state[name] = torch.zeros_like(p, dtype=torch.float32)
    return state


def ensure_states(opt: Any) -> None:
    """Create the states of every DTensor parameter of `opt` (biases and others stepped by
    `opt.step()` included) before the first step; cheap and idempotent."""
    for group in opt.param_groups:
        for p in group["params"]:
            if is_dtensor(p):
                _ensure_states(opt, p)


# Optimizers whose DTensor parameters all have their states (checked once, at the first forward).
_READY: weakref.WeakSet = weakref.WeakSet()


def fused_update_local(
    slot: _Slot, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None
) -> None:
    """The fused step of one sharded weight on its local shard: dW_local = dyᵀ·x, never formed.

    The optimizer's own hot path, with the shard's local tensors in place of the weight and its
    states (launcher bound once, the group's scalars shared with the other layers).
    """
    opt = slot._opt()
    if opt is None:
        raise RuntimeError("FORGE: the optimizer that owns this layer no longer exists")
    slot.check_can_update()
    p = slot.param
    state = _ensure_states(opt, p)
    step = state["step"] = int(state["step"]) + 1
    w = p._local_tensor
    states = [state[name]._local_tensor for name in opt.rule.state_names]
    sc, scalar_args = opt._step_scalars(slot, step)
    key = 0
    if opt.stochastic and w.dtype == torch.bfloat16:
        key = reference.sr_seed_key(opt.seed, slot.index, step)
    with torch.no_grad():
        if opt.backend == "reference" or not triton_available(w.device):
            if w_old_out is not None:
                w_old_out.copy_(w)
            reference.forge_linear_step_reference(
                dy, x, w, states, opt.rule, sc, stochastic=opt.stochastic, seed_key=key
            )
        else:
            launcher = opt._launchers[slot.index]
            if launcher is None or not launcher.bound_to(w, states):
                launcher = LayerLauncher(w, states, opt.rule, stochastic=opt.stochastic)
                opt._launchers[slot.index] = launcher
            tf32 = dy.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
            launcher(dy, x, sc, scalar_args, key, "tf32" if tf32 else "ieee", w_old_out)
    torch.autograd.graph.increment_version(w)
    slot.updated = True


def forge_linear_sharded(
    x: torch.Tensor, weight: DTensor, bias: torch.Tensor | None, slot: _Slot
) -> torch.Tensor:
    """F.linear for a column- or row-parallel weight, its update fused on the local shard.

    Column-parallel: x replicated, y = x·Wₗᵀ + bₗ is the output's column shard; the input's
    gradient is a partial sum (reduced by the redistribution before the layer). Row-parallel: x
    is the input's column shard, x·Wₗᵀ a partial sum, the replicated bias added after the sum.
    """
    if not (torch.is_grad_enabled() and weight.requires_grad):
        return F.linear(x, weight, bias)
    layout = _layout(weight)
    mesh = weight.device_mesh
    opt = slot._opt()
    if opt is not None and getattr(opt, "capturable", False):
        raise NotImplementedError(
            f"FORGE: capturable=True is not supported with tensor parallelism ({slot.name}.weight "
            "is a DTensor): the sharded step keeps host-side step counts; build the optimizer "
            "with capturable=False"
        )
    if opt is not None and opt not in _READY:
        ensure_states(opt)  # `opt.step()` steps the sharded biases: their states must be DTensors
        _READY.add(opt)
    if not is_dtensor(x):
        x = DTensor.from_local(
            x, mesh, [Replicate() if layout == "colwise" else Shard(-1)], run_check=False
        )
    w_local = weight._local_tensor
    if layout == "colwise":
        if not isinstance(x.placements[0], Replicate):
            x = x.redistribute(mesh, [Replicate()])
        x_local = x.to_local(grad_placements=[Partial()])
        b_local = bias.to_local() if is_dtensor(bias) else bias
        y_local = ForgeLinearFunction.apply(x_local, w_local, b_local, _ShardSlot(slot))
        return DTensor.from_local(y_local, mesh, [Shard(-1)], run_check=False)
    if not (isinstance(x.placements[0], Shard) and x.placements[0].dim in (-1, x.ndim - 1)):
        x = x.redistribute(mesh, [Shard(-1)])
    x_local = x.to_local()
    y_local = ForgeLinearFunction.apply(x_local, w_local, None, _ShardSlot(slot))
    y = DTensor.from_local(y_local, mesh, [Partial()], run_check=False)
    if bias is not None:
        y = y.redistribute(mesh, [Replicate()])
        y = y + (bias if is_dtensor(bias) else DTensor.from_local(bias, mesh, [Replicate()]))
    return y
