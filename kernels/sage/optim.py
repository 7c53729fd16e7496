"""SAGE, SinkGD and Lion as torch optimizers, and the hybrids of arXiv 2604.07663.

Every class is a plain ``torch.optim.Optimizer``: param groups, ``state_dict``/``load_state_dict``
and LR schedulers work as usual. On CUDA tensors (or under ``TRITON_INTERPRET=1``) the steps run
the Triton kernels of this folder; elsewhere they run the literal transcriptions in
``reference.py``.

A hybrid routes parameters by module type, never by name: the weights of ``nn.Embedding``
modules and every tensor of rank < 2 go to the embedding-side rule (SAGE, AdamW or Lion), every
other matrix to SinkGD. Each hybrid is one optimizer whose groups carry a ``rule`` key.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from kernels.runtime.device import interpreting
from kernels.runtime.hyper import check_hyper
from kernels.runtime.optim import closure_loss
from kernels.sage.reference import (
    MomentumOrder,
    as_matrix,
    lion_reference_step,
    sage_reference_step,
    sinkgd_reference_step,
)

_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_FP32_STATE_KEYS = ("s_ema",)  # kept in fp32 whatever the parameter's dtype
RULES = ("sage", "lion", "adamw", "sinkgd")


def _use_kernels(p: torch.Tensor, requested: bool | None) -> bool:
    """Kernels on CUDA or under the interpreter, for contiguous fp32/bf16/fp16 tensors."""
    fits = p.dtype in _KERNEL_DTYPES and p.is_contiguous()
    if requested is None:
        return fits and (p.is_cuda or interpreting())
    if requested and not (p.is_cuda or interpreting()):
        raise RuntimeError("use_kernels=True needs CUDA tensors or TRITON_INTERPRET=1")
    return requested and fits


def _dense(g: torch.Tensor) -> torch.Tensor:
    if g.is_sparse:
        raise RuntimeError("these optimizers do not take sparse gradients")
    return g if g.is_contiguous() else g.contiguous()


def _dense_grad(p: torch.Tensor) -> torch.Tensor:
    return _dense(p.grad)


# Bound per-parameter launches (kernels.sage.launch.SageStepPlan), by id of the parameter; an
# optimizer keeps its own (see `_plans_of`). A plan re-binds by itself when its parameter or
# state moves, so a stale entry is only a cache miss.
Plans = dict[int, Any]


def _plans_of(opt: Optimizer) -> Plans:
    """The optimizer's plans, created on first use (a pickled or deep-copied optimizer carries
    only torch's state, so they are rebuilt lazily)."""
    plans = opt.__dict__.get("_sage_plans")
    if plans is None:
        plans = opt.__dict__["_sage_plans"] = {}
    return plans


def sage_group_step(
    state: dict[Any, dict],
    group: dict[str, Any],
    use_kernels: bool | None = None,
    plans: Plans | None = None,
) -> None:
    """One SAGE step for every parameter of `group` that has a gradient. With `plans`, each
    parameter's kernels launch through its bound `SageStepPlan` (the group's scalars formed
    once); without, through the general `sage_step_`."""
    beta1, beta2 = group["betas"]
    bound: tuple | None = None  # (scalars, direct launch allowed, plan class), at first use
    for p in group["params"]:
        g = p.grad
        if g is None:
            continue
        g = _dense(g)
        st = state[p]
        if not st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            st["s_ema"] = torch.zeros(as_matrix(p).shape[1], dtype=torch.float32, device=p.device)
        step = st["step"] + 1
        st["step"] = step
        if not _use_kernels(p, use_kernels):
            sage_reference_step(
                p,
                g,
                st["exp_avg"],
                st["s_ema"],
                step,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                order=group["order"],
            )
            continue
        if bound is None:
            bound = _bind_group(group, beta1, beta2, group["eps"])
        sc, direct, plan_cls = bound
        if plans is None:
            from kernels.sage.launch import sage_step_

            sage_step_(
                p,
                g,
                st["exp_avg"],
                st["s_ema"],
                step,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                order=group["order"],
            )
            continue
        plan = plans.get(id(p))
        if plan is None:
            plan = plans[id(p)] = plan_cls(has_scale=True)
        plan(p, g, st["exp_avg"], st["s_ema"], step, sc, direct)


_LAUNCH: Any = None  # kernels.sage.launch, imported on first use (it loads triton)


def _bind_group(group: dict[str, Any], beta1: float, beta2: float, eps: float) -> tuple:
    """What every kernel launch of a group shares in one step: its scalars, whether direct
    launches are allowed, and the plan class."""
    global _LAUNCH
    if _LAUNCH is None:
        from kernels.sage import launch

        _LAUNCH = launch
    sc = _LAUNCH.sage_scalars(
        lr=group["lr"],
        beta1=beta1,
        beta2=beta2,
        weight_decay=group["weight_decay"],
        eps=eps,
        order=group.get("order", "paper"),
    )
    return sc, _LAUNCH.direct_launch_allowed(), _LAUNCH.SageStepPlan


def lion_group_step(
    state: dict[Any, dict],
    group: dict[str, Any],
    use_kernels: bool | None = None,
    plans: Plans | None = None,
) -> None:
    """One Lion step for every parameter of `group` that has a gradient (bound launches with
    `plans`, as in `sage_group_step`)."""
    beta1, beta2 = group["betas"]
    bound: tuple | None = None
    for p in group["params"]:
        g = p.grad
        if g is None:
            continue
        g = _dense(g)
        st = state[p]
        if not st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        st["step"] += 1
        if not _use_kernels(p, use_kernels):
            lion_reference_step(
                p,
                g,
                st["exp_avg"],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
            )
            continue
        if plans is None:
            from kernels.sage.launch import lion_step_

            lion_step_(
                p,
                g,
                st["exp_avg"],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
            )
            continue
        if bound is None:
            bound = _bind_group(group, beta1, beta2, 0.0)
        sc, direct, plan_cls = bound
        plan = plans.get(id(p))
        if plan is None:
            plan = plans[id(p)] = plan_cls(has_scale=False)
        plan(p, g, st["exp_avg"], None, 0, sc, direct)


def sinkgd_group_step(group: dict[str, Any], use_kernels: bool | None = None) -> None:
    """One SinkGD step for every parameter of `group` that has a gradient (stateless); the
    kernels take all parameters of one shape and dtype in one launch per pass."""
    from kernels.sage.launch import sinkgd_step_

    kwargs = dict(
        lr=group["lr"], weight_decay=group["weight_decay"], iters=group["iters"], eps=group["eps"]
    )
    buckets: dict[tuple, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for p in group["params"]:
        if p.grad is None:
            continue
        g = _dense_grad(p)
        if _use_kernels(p, use_kernels):
            key = (tuple(p.shape), p.dtype, g.dtype, p.device)
            ps, gs = buckets.setdefault(key, ([], []))
            ps.append(p)
            gs.append(g)
        else:
            sinkgd_reference_step(p, g, **kwargs)
    for ps, gs in buckets.values():
        sinkgd_step_(ps, gs, **kwargs)


def _without_grad(step: Callable[..., Any]) -> Callable[..., Any]:
    """`torch.no_grad()` around an optimizer step without a context object per call (the
    decorator's costs a few µs a step on a slow host, a share of a small step's issue time)."""

    @functools.wraps(step)
    def wrapped(self: Optimizer, closure: Callable[[], float] | None = None) -> float | None:
        prev = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            return step(self, closure)
        finally:
            torch._C._set_grad_enabled(prev)

    return wrapped


class _StateDictFp32Mixin:
    """torch casts every floating state tensor to its parameter's dtype on load; SAGE's column
    statistic stays fp32 whatever the parameter, so its saved values are put back exactly."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        exact: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for pid, p in zip(saved_ids, params, strict=True):
            saved = state_dict["state"].get(pid, {})
            keep = {k: v for k, v in saved.items() if k in _FP32_STATE_KEYS}
            if keep:
                exact[p] = keep
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for p, entries in exact.items():
            for k, v in entries.items():
                self.state[p][k] = v.to(device=p.device, dtype=torch.float32).clone()  # type: ignore[attr-defined]


class SAGE(_StateDictFp32Mixin, Optimizer):
    """Sign-Adaptive Gradient: a Lion-style sign step times a bounded O(cols) scale H ≤ 1.

    A parameter of rank ≥ 2 takes the column statistic (mean of |g| over its first dimension), a
    vector the elementwise one. ``order="paper"`` signs β1·m_{t−1} + (1−β1)·g (arXiv 2604.07663);
    ``order="code"`` signs β1·m_t + (1−β1)·g (the official code). State per parameter: ``exp_avg``
    (like the parameter), ``s_ema`` (fp32, one entry per column) and ``step``.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        order: MomentumOrder = "paper",
        use_kernels: bool | None = None,
    ) -> None:
        check_hyper(lr=lr, weight_decay=weight_decay, eps=eps, betas=betas)
        if order not in ("paper", "code"):
            raise ValueError(f"order must be 'paper' or 'code', not {order!r}")
        self.use_kernels = use_kernels
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, order=order)
        super().__init__(params, defaults)

    @_without_grad
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        for group in self.param_groups:
            sage_group_step(self.state, group, self.use_kernels, _plans_of(self))
        return loss


class Lion(Optimizer):
    """Lion (Chen et al. 2023): θ ← θ(1−ηλ) − η·sign(β1 m + (1−β1) g); m ← β2 m + (1−β2) g."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        use_kernels: bool | None = None,
    ) -> None:
        check_hyper(lr=lr, weight_decay=weight_decay, eps=0.0, betas=betas)
        self.use_kernels = use_kernels
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @_without_grad
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        for group in self.param_groups:
            lion_group_step(self.state, group, self.use_kernels, _plans_of(self))
        return loss


class SinkGD(Optimizer):
    """SinkGD (Scetbon et al. 2025): a stateless step along the gradient after `iters` alternating
    row/column ℓ2 normalisations (rows to sqrt(cols), columns to sqrt(rows)). A tensor of rank > 2
    is viewed as (shape[0], rest); a vector as one row, which makes its update sign(g)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        *,
        iters: int = 5,
        eps: float = 1e-8,
        use_kernels: bool | None = None,
    ) -> None:
        check_hyper(lr=lr, weight_decay=weight_decay, eps=eps, betas=None)
        if iters < 1:
            raise ValueError("SinkGD needs at least one normalisation (iters ≥ 1)")
        self.use_kernels = use_kernels
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, iters=iters, eps=eps))

    @_without_grad
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        for group in self.param_groups:
            sinkgd_group_step(group, self.use_kernels)
        return loss


def route_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(embedding side, matrix side) by module type: the parameters of nn.Embedding and
    nn.EmbeddingBag modules and every tensor of rank < 2 go to the embedding side, all other
    trainable tensors to the matrix side. A weight tied between an embedding and a linear layer
    counts as an embedding. Each parameter appears once."""
    embedding = {
        id(p)
        for mod in model.modules()
        if isinstance(mod, nn.Embedding | nn.EmbeddingBag)
        for p in mod.parameters(recurse=False)
    }
    embed_side: list[nn.Parameter] = []
    matrix_side: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (embed_side if id(p) in embedding or p.ndim < 2 else matrix_side).append(p)
    return embed_side, matrix_side


class _Hybrid(_StateDictFp32Mixin, Optimizer):
    """One optimizer over groups tagged with a ``rule``; an AdamW rule runs through an inner
    ``torch.optim.AdamW`` (fused on CUDA) that shares this optimizer's groups and state."""

    def __init__(
        self, groups: list[dict[str, Any]], use_kernels: bool | None, fused_adamw: bool | None
    ) -> None:
        for g in groups:
            if g["rule"] not in RULES:
                raise ValueError(f"unknown rule {g['rule']!r}")
        self.use_kernels = use_kernels
        self._fused_adamw = fused_adamw
        super().__init__([g for g in groups if g["params"]], {})
        self._attach_adamw()

    def _attach_adamw(self) -> None:
        groups = [g for g in self.param_groups if g["rule"] == "adamw"]
        self._adamw: torch.optim.AdamW | None = None
        if not groups:
            return
        fused = self._fused_adamw
        if fused is None:
            fused = all(p.is_cuda for g in groups for p in g["params"])
        adamw = torch.optim.AdamW(groups, lr=groups[0]["lr"], fused=fused or None)
        adamw.state = self.state  # one state for the whole hybrid (state_dict sees it all)
        self._adamw = adamw

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._attach_adamw()

    @_without_grad
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        for group in self.param_groups:
            rule = group["rule"]
            if rule == "sage":
                sage_group_step(self.state, group, self.use_kernels, _plans_of(self))
            elif rule == "lion":
                lion_group_step(self.state, group, self.use_kernels, _plans_of(self))
            elif rule == "sinkgd":
                sinkgd_group_step(group, self.use_kernels)
        if self._adamw is not None:
            self._adamw.step()
        return loss


def _sinkgd_group(
    params: list[nn.Parameter], lr: float, weight_decay: float, iters: int, eps: float
) -> dict[str, Any]:
    if iters < 1:
        raise ValueError("SinkGD needs at least one normalisation (iters ≥ 1)")
    return dict(
        params=params, rule="sinkgd", lr=lr, weight_decay=weight_decay, iters=iters, eps=eps
    )


class SAGEHybrid(_Hybrid):
    """The paper's optimizer: SAGE on embeddings and vectors, SinkGD on the other matrices.

    `lr` drives SAGE, `matrix_lr` (default `lr`) SinkGD; schedulers scale both groups.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        matrix_lr: float | None = None,
        sinkgd_iters: int = 5,
        order: MomentumOrder = "paper",
        use_kernels: bool | None = None,
    ) -> None:
        check_hyper(lr=lr, weight_decay=weight_decay, eps=eps, betas=betas)
        if order not in ("paper", "code"):
            raise ValueError(f"order must be 'paper' or 'code', not {order!r}")
        embed, matrices = route_parameters(model)
        groups = [
            dict(
                params=embed,
                rule="sage",
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                order=order,
            ),
            _sinkgd_group(
                matrices, lr if matrix_lr is None else matrix_lr, weight_decay, sinkgd_iters, eps
            ),
        ]
        super().__init__(groups, use_kernels, None)


class SinkGDHybrid(_Hybrid):
    """The baseline hybrid: AdamW on embeddings and vectors, SinkGD on the other matrices."""

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        matrix_lr: float | None = None,
        sinkgd_iters: int = 5,
        fused_adamw: bool | None = None,
        use_kernels: bool | None = None,
    ) -> None:
        check_hyper(lr=lr, weight_decay=weight_decay, eps=eps, betas=betas)
        embed, matrices = route_parameters(model)
        groups = [
            dict(
                params=embed, rule="adamw", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay
            ),
            _sinkgd_group(
                matrices, lr if matrix_lr is None else matrix_lr, weight_decay, sinkgd_iters, eps
            ),
        ]
        super().__init__(groups, use_kernels, fused_adamw)


class LionHybrid(_Hybrid):
    """A comparison hybrid: Lion (SAGE with H ≡ 1) on embeddings and vectors, SinkGD elsewhere."""

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        matrix_lr: float | None = None,
        sinkgd_iters: int = 5,
        eps: float = 1e-8,
        use_kernels: bool | None = None,
    ) -> None:
        check_hyper(lr=lr, weight_decay=weight_decay, eps=eps, betas=betas)
        embed, matrices = route_parameters(model)
        groups = [
            dict(params=embed, rule="lion", lr=lr, betas=betas, weight_decay=weight_decay),
            _sinkgd_group(
                matrices, lr if matrix_lr is None else matrix_lr, weight_decay, sinkgd_iters, eps
            ),
        ]
        super().__init__(groups, use_kernels, None)


def optimizer_state_bytes(opt: Optimizer) -> int:
    """Bytes held by the optimizer's state tensors (summed over ``opt.state``)."""
    total = 0
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor):
                total += v.numel() * v.element_size()
    return total
