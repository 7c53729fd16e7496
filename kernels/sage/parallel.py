"""SAGE, SinkGD and Lion on FSDP2-sharded parameters: the whole-matrix statistics all-reduced.

`torch.distributed.fsdp.fully_shard` leaves each parameter a DTensor sharded by rows (Shard(0))
and hands the optimizer row shards of the averaged gradient. What each rule needs beyond the
rank's rows:

- Lion is element-wise: its kernel runs on the local shard as is.
- SAGE's column statistic is a mean over all rows: each rank's column sums of |g| (the column
  kernel's partials) are all-reduced, then the scale kernel forms S and H — identical on every
  rank, so `s_ema` is a full (cols,) fp32 tensor on each — and the apply kernel steps the shard.
  A vector is one row whose columns are sharded: its |g| is gathered (vectors are small), H
  formed in full and each rank applies its slice.
- SinkGD's row norms are local; its column norms sum squares over all rows, all-reduced once per
  pass. The passes run in torch (the column kernel folds its reduction into the update of the
  column scales, leaving no point to reduce across ranks); the apply kernel steps the shard.

`shard_aware(opt)` makes `opt.step()` this sharded step for SAGE, Lion, SinkGD and the hybrids
(AdamW groups go through torch's AdamW, which takes DTensors itself). Results equal one process
on the full tensors to fp32 rounding (the sums meet in another order). Without kernels (a CPU
without the interpreter) SAGE and SinkGD gather the full tensors and run the reference.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.optim import Optimizer

from kernels.runtime.optim import closure_loss

from . import launch as sl
from .kernels import _sinkgd_apply_kernel
from .optim import SAGE, Lion, SinkGD, _Hybrid, _use_kernels
from .reference import as_matrix, lion_reference_step, sage_reference_step, sinkgd_reference_step


def _local(t: torch.Tensor) -> torch.Tensor:
    return t._local_tensor if isinstance(t, DTensor) else t


def _row_sharded(p: torch.Tensor) -> bool:
    """A DTensor sharded by rows on a 1-D mesh (FSDP2's layout); a replicated or plain tensor
    steps locally. Any other layout is refused."""
    if not isinstance(p, DTensor):
        return False
    placements = p.placements
    if p.device_mesh.ndim != 1:
        raise NotImplementedError("sharded SAGE/SinkGD/Lion take a 1-D device mesh (FSDP2)")
    if isinstance(placements[0], Replicate):
        return False
    if isinstance(placements[0], Shard) and placements[0].dim == 0:
        return True
    raise NotImplementedError(f"parameters placed {placements}: only Shard(0) (FSDP2)")


def _group(p: DTensor) -> dist.ProcessGroup:
    return p.device_mesh.get_group()


def _shard_of(full: torch.Tensor, like: DTensor) -> torch.Tensor:
    """This rank's Shard(0) slice of a tensor every rank holds in full (no communication)."""
    mesh = like.device_mesh
    rep = DTensor.from_local(full, mesh, [Replicate()], run_check=False)
    return rep.redistribute(mesh, [Shard(0)]).to_local()


def _grad(p: torch.Tensor) -> torch.Tensor | None:
    g = p.grad
    if g is None:
        return None
    if g.is_sparse:
        raise RuntimeError("these optimizers do not take sparse gradients")
    return g


def _reference_gathered(
    p: DTensor, g: DTensor, state: list[torch.Tensor], step: Callable[..., Any]
) -> None:
    """Run a reference step on the gathered full tensors and keep this rank's rows."""
    full = [p.full_tensor(), g.full_tensor(), *(s.full_tensor() for s in state)]
    step(*full)
    for t, f in zip([p, *state], [full[0], *full[2:]], strict=True):
        _local(t).copy_(_shard_of(f, p))


# --- SAGE ---------------------------------------------------------------------------------


def _sage_init(st: dict[str, Any], p: torch.Tensor) -> None:
    if not st:
        st["step"] = 0
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        cols = math.prod(p.shape[1:]) if p.ndim >= 2 else p.numel()
        st["s_ema"] = torch.zeros(cols, dtype=torch.float32, device=_local(p).device)


def _sage_reference_full(
    p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, *, s_ema: torch.Tensor, step: int, **kw: Any
) -> None:
    sage_reference_step(p, g, m, s_ema, step, **kw)


def sage_group_step_sharded(
    state: dict[Any, dict], group: dict[str, Any], use_kernels: bool | None
) -> None:
    """One SAGE step for every parameter of `group` with a gradient, sharded ones included."""
    beta1, beta2 = group["betas"]
    hyper = dict(lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"])
    for p in group["params"]:
        g = _grad(p)
        if g is None:
            continue
        st = state[p]
        _sage_init(st, p)
        step = st["step"] = int(st["step"]) + 1
        m, s_ema = st["exp_avg"], st["s_ema"]
        order = group.get("order", "paper")
        if not _row_sharded(p):
            args = (_local(p), _local(g).contiguous(), _local(m), s_ema, step)
            if _use_kernels(_local(p), use_kernels):
                sl.sage_step_(*args, eps=group["eps"], order=order, **hyper)
            else:
                sage_reference_step(*args, eps=group["eps"], order=order, **hyper)
            continue
        if not _use_kernels(_local(p), use_kernels):
            ref = functools.partial(
                _sage_reference_full, s_ema=s_ema, step=step, eps=group["eps"], order=order
            )
            _reference_gathered(p, g, [m], functools.partial(ref, **hyper))
            continue
        sc = sl.sage_scalars(eps=group["eps"], order=order, **hyper)
        pl, gl, ml = _local(p), _local(g).contiguous(), _local(m)
        h = torch.empty(s_ema.numel(), dtype=torch.float32, device=pl.device)
        if p.ndim >= 2:
            # column sums of |g| over this rank's rows, summed over ranks: the full statistic
            if gl.numel():
                partial, _ = sl.sage_column_abs_sum_partials(gl)
                colsum = partial.sum(0, keepdim=True)
            else:
                colsum = torch.zeros((1, s_ema.numel()), dtype=torch.float32, device=pl.device)
            dist.all_reduce(colsum, group=_group(p))
            sl.launch_scale(colsum, s_ema, h, p.shape[0], sc.beta2, 1.0 - sc.beta2**step, sc.eps)
            h_local = h
        else:
            partial, _ = sl.sage_column_abs_sum_partials(g.full_tensor().contiguous())
            sl.launch_scale(partial, s_ema, h, 1, sc.beta2, 1.0 - sc.beta2**step, sc.eps)
            h_local = _shard_of(h, p).contiguous()
        if pl.numel():
            sl.launch_apply(_rows(pl, p), _rows(gl, p), _rows(ml, p), h_local, sc, has_scale=True)


def _rows(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The (rows, cols) view of a local shard: a vector's shard is one row, like the vector."""
    return as_matrix(t) if like.ndim >= 2 else t.reshape(1, -1)


# --- Lion ---------------------------------------------------------------------------------


def lion_group_step_sharded(
    state: dict[Any, dict], group: dict[str, Any], use_kernels: bool | None
) -> None:
    """One Lion step for every parameter of `group` with a gradient: element-wise, on shards."""
    beta1, beta2 = group["betas"]
    hyper = dict(lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"])
    for p in group["params"]:
        g = _grad(p)
        if g is None:
            continue
        _row_sharded(p)  # refuses layouts it does not know
        st = state[p]
        if not st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        st["step"] += 1
        pl, gl, ml = _local(p), _local(g).contiguous(), _local(st["exp_avg"])
        if not pl.numel():
            continue
        if _use_kernels(pl, use_kernels):
            sl.lion_step_(pl, gl, ml, **hyper)
        else:
            lion_reference_step(pl, gl, ml, **hyper)


# --- SinkGD -------------------------------------------------------------------------------


def sinkgd_scales_sharded(
    g: torch.Tensor, n_rows: int, iters: int, eps: float, group: dist.ProcessGroup
) -> tuple[torch.Tensor, torch.Tensor]:
    """SinkGD's row scales a (this rank's rows) and column scales b (all columns) for a row
    shard `g` (rows, cols) of an `n_rows`-row gradient, as the kernels form them: a zero row or
    column keeps its scale; the column norms sum over every rank's rows."""
    x = g.float()
    a = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
    b = torch.ones(x.shape[1], dtype=torch.float32, device=x.device)
    row_target, col_target = math.sqrt(x.shape[1]), math.sqrt(n_rows)
    for _ in range(iters):
        norm = (x * b).square().sum(1).sqrt()
        a = torch.where(norm > 0, a / (a * norm + eps) * row_target, a)
        sq = (x * a[:, None]).square().sum(0)
        dist.all_reduce(sq, group=group)
        norm = sq.sqrt()
        b = torch.where(norm > 0, b / (b * norm + eps) * col_target, b)
    return a, b


def sinkgd_group_step_sharded(group: dict[str, Any], use_kernels: bool | None) -> None:
    """One SinkGD step for every parameter of `group` with a gradient (stateless)."""
    lr, wd, iters, eps = group["lr"], group["weight_decay"], group["iters"], group["eps"]
    for p in group["params"]:
        g = _grad(p)
        if g is None:
            continue
        if not _row_sharded(p):
            pl, gl = _local(p), _local(g).contiguous()
            if _use_kernels(pl, use_kernels):
                sl.sinkgd_step_([pl], [gl], lr=lr, weight_decay=wd, iters=iters, eps=eps)
            else:
                sinkgd_reference_step(pl, gl, lr=lr, weight_decay=wd, iters=iters, eps=eps)
            continue
        pl, gl = _local(p), _local(g).contiguous()
        kernels = _use_kernels(pl, use_kernels)
        if p.ndim < 2:  # one row whose columns are sharded: gather it (vectors are small)
            if not kernels:
                _reference_gathered(
                    p,
                    g,
                    [],
                    lambda pf, gf: sinkgd_reference_step(
                        pf, gf, lr=lr, weight_decay=wd, iters=iters, eps=eps
                    ),
                )
                continue
            a_full, b_full = sl.sinkgd_scales([g.full_tensor().contiguous()], iters=iters, eps=eps)
            a, b = a_full[0], _shard_of(b_full[0], p).contiguous()
            gm, pm = gl.reshape(1, -1), pl.reshape(1, -1)
        else:
            gm, pm = as_matrix(gl), as_matrix(pl)
            a, b = sinkgd_scales_sharded(gm, p.shape[0], iters, eps, _group(p))
        if not pl.numel():
            continue
        if kernels:
            _sinkgd_apply(pm, gm, a, b, 1.0 - lr * wd, lr)
        else:
            pm.mul_(1.0 - lr * wd)
            pm.copy_(pm - lr * (a[:, None] * gm.float() * b[None, :]).to(pm.dtype))


def _sinkgd_apply(
    pm: torch.Tensor, gm: torch.Tensor, a: torch.Tensor, b: torch.Tensor, decay: float, lr: float
) -> None:
    """The SinkGD apply kernel on one (rows, cols) shard with its scales."""
    n_rows, n_cols = pm.shape

    def grid(meta: dict) -> tuple[int, int]:
        return (sl.cdiv(n_rows, meta["BLOCK_R"]) * sl.cdiv(n_cols, meta["BLOCK_C"]), 1)

    _sinkgd_apply_kernel[grid](
        sl._pointer_table([pm]),
        pm,
        sl._pointer_table([gm]),
        gm,
        a.reshape(1, -1).contiguous(),
        b.reshape(1, -1).contiguous(),
        n_rows,
        n_cols,
        decay,
        lr,
    )


# --- the optimizer's step -----------------------------------------------------------------


def _rule(opt: Optimizer, group: dict[str, Any]) -> str:
    rule = group.get("rule")
    if rule is not None:
        return rule
    for cls, name in ((SAGE, "sage"), (Lion, "lion"), (SinkGD, "sinkgd")):
        if isinstance(opt, cls):
            return name
    raise TypeError(f"{type(opt).__name__} is not a SAGE, Lion, SinkGD or hybrid optimizer")


def sharded_step(opt: Optimizer, closure: Callable[[], Any] | None = None) -> Any:
    """`opt.step()` for parameters sharded by FSDP2 (plain and replicated ones step as usual)."""
    loss = closure_loss(closure)
    use_kernels = getattr(opt, "use_kernels", None)
    with torch.no_grad():
        for group in opt.param_groups:
            rule = _rule(opt, group)
            if rule == "sage":
                sage_group_step_sharded(opt.state, group, use_kernels)
            elif rule == "lion":
                lion_group_step_sharded(opt.state, group, use_kernels)
            elif rule == "sinkgd":
                sinkgd_group_step_sharded(group, use_kernels)
        if isinstance(opt, _Hybrid) and opt._adamw is not None:
            opt._adamw.step()
    return loss


def shard_aware(opt: Optimizer) -> Optimizer:
    """Make `opt.step()` the sharded step (returns `opt`); build the optimizer on the model
    after `fully_shard`, so its parameters are the DTensors FSDP2 steps."""
    _rule(opt, opt.param_groups[0])  # refuses an optimizer of another kind now, not at step
    opt.step = types.MethodType(sharded_step, opt)  # type: ignore[method-assign]
    return opt
