"""Host launchers of ChunkFT's kernels, and the autograd Functions that call them in backward.

Every launcher checks its inputs and fails loudly with a message saying what is wrong; on a CPU
tensor without Triton's interpreter it runs the reference (the CPU path). The Functions compute
the full input gradient (dX = dY·W) and hand the weight-gradient work of the active slice to a
`slot` (the optimizer's): inactive layers save no input and form no weight gradient at all.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import triton

from kernels.forge.rules import StepScalars
from kernels.runtime.device import interpreting, kernels_run_on

from . import reference
from .kernels import _adamw_slice_kernel, _embedding_dw_kernel, _sliced_dw_kernel, gemm_config
from .reference import check_strategy

GEMM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
ADAMW_BLOCK = 1 << 15 if interpreting() else 1024  # the interpreter pays per program


def _as_2d(t: torch.Tensor) -> torch.Tensor:
    """[..., C] -> [T, C] (a view when the leading dims fold, else a copy)."""
    return t.reshape(-1, t.shape[-1])


def _slice_views(
    dy: torch.Tensor, x: torch.Tensor, start: int, end: int, strategy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The GEMM operands of the strategy, as strided views (nothing copied)."""
    check_strategy(strategy)
    if dy.dim() != 2 or x.dim() != 2 or dy.shape[0] != x.shape[0]:
        raise ValueError(
            f"dy [T, N] and x [T, K] must share T, got {tuple(dy.shape)}, {tuple(x.shape)}"
        )
    if dy.dtype != x.dtype or dy.dtype not in GEMM_DTYPES:
        raise TypeError(f"dy and x must both be fp32, bf16 or fp16, got {dy.dtype}, {x.dtype}")
    if dy.device != x.device:
        raise ValueError(f"dy on {dy.device}, x on {x.device}")
    width = dy.shape[1] if strategy == "column" else x.shape[1]
    if not (0 <= start < end <= width):
        raise ValueError(f"slice [{start}, {end}) is empty or outside [0, {width})")
    if dy.shape[0] == 0:
        raise ValueError("no tokens: the gradient would be zero")
    if strategy == "column":
        return dy[:, start:end], x
    return dy, x[:, start:end]


def _gemm_meta(dy: torch.Tensor, fused: bool = False) -> tuple[dict[str, int], bool, bool]:
    ieee = dy.dtype == torch.float32
    upcast = interpreting() and dy.dtype != torch.float32
    return gemm_config(ieee, fused), ieee, upcast


def sliced_dw(
    dy: torch.Tensor,
    x: torch.Tensor,
    start: int,
    end: int,
    strategy: str = "column",
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weight gradient of one slice of a linear layer (y = x·Wᵀ), fp32, never the whole dW.

    dy: [..., N], x: [..., K] (fp32, bf16 or fp16, any strides). "column": dW[start:end, :]
    ([end − start, K]); "row": dW[:, start:end] ([N, end − start]). fp32 operands multiply in
    full fp32 (no TF32). `out`, when given, must be contiguous fp32 of the slice's shape.
    """
    dy2, x2 = _as_2d(dy), _as_2d(x)
    a, b = _slice_views(dy2, x2, start, end, strategy)
    T, N = a.shape
    K = b.shape[1]
    if out is None:
        out = torch.empty(N, K, dtype=torch.float32, device=dy.device)
    elif out.shape != (N, K) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be contiguous fp32 [{N}, {K}], got {tuple(out.shape)}")
    if not kernels_run_on(dy.device):
        out.copy_(reference.sliced_dw_reference(dy2, x2, start, end, strategy))
        return out
    cfg, ieee, upcast = _gemm_meta(a)
    grid = (triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(K, cfg["BLOCK_K"]))
    _sliced_dw_kernel[grid](
        a, b, out, out, out, out,
        T, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), 0, 0,
        0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        FUSED=False, W_BF16=False, DOT_IEEE=ieee, UPCAST=upcast,
        BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], BLOCK_T=cfg["BLOCK_T"],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    return out


def _check_adamw_operands(
    weight_view: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor
) -> None:
    shape = tuple(weight_view.shape)
    if weight_view.dtype not in (torch.float32, torch.bfloat16):
        raise TypeError(f"ChunkFT updates fp32 or bf16 weights, not {weight_view.dtype}")
    for name, s in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if s.dtype != torch.float32 or tuple(s.shape) != shape or not s.is_contiguous():
            raise ValueError(f"{name} must be contiguous fp32 {list(shape)}, got {tuple(s.shape)}")
        if s.device != weight_view.device:
            raise ValueError(f"{name} on {s.device}, weight on {weight_view.device}")


def sliced_dw_adamw_(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    start: int,
    end: int,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    sc: StepScalars,
    strategy: str = "column",
) -> None:
    """AdamW on the slice of `weight` [N, K] the strategy names, with the slice gradient applied
    in the GEMM's epilogue (FORGE's rule): no gradient is written. States are contiguous fp32 of
    the slice's shape; bf16 weights are updated in fp32 and rounded to nearest."""
    dy2, x2 = _as_2d(dy), _as_2d(x)
    a, b = _slice_views(dy2, x2, start, end, strategy)
    if weight.dim() != 2 or tuple(weight.shape) != (dy2.shape[1], x2.shape[1]):
        raise ValueError(
            f"weight {tuple(weight.shape)} is not [N, K] = [{dy2.shape[1]}, {x2.shape[1]}]"
        )
    view = weight[start:end] if strategy == "column" else weight[:, start:end]
    _check_adamw_operands(view, exp_avg, exp_avg_sq)
    if weight.device != dy.device:
        raise ValueError(f"weight on {weight.device}, dy on {dy.device}")
    if not kernels_run_on(dy.device):
        reference.sliced_dw_adamw_reference_(
            dy2, x2, weight, start, end, exp_avg, exp_avg_sq, sc, strategy
        )
        return
    T, N = a.shape
    K = b.shape[1]
    w_bf16 = weight.dtype == torch.bfloat16
    w_arg = view.view(torch.int16) if w_bf16 else view
    cfg, ieee, upcast = _gemm_meta(a, fused=True)
    grid = (triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(K, cfg["BLOCK_K"]))
    _sliced_dw_kernel[grid](
        a, b, exp_avg, w_arg, exp_avg, exp_avg_sq,
        T, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        w_arg.stride(0), w_arg.stride(1),
        float(sc.lr), float(sc.decay), float(sc.beta1), float(sc.beta2), float(sc.eps),
        float(sc.step_size), float(sc.bc2_sqrt),
        FUSED=True, W_BF16=w_bf16, DOT_IEEE=ieee, UPCAST=upcast,
        BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], BLOCK_T=cfg["BLOCK_T"],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip


def embedding_dw(
    ids: torch.Tensor,
    dy: torch.Tensor,
    start: int,
    end: int,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rows [start, end) of an embedding's weight gradient (fp32 [end − start, D]): every token
    whose id lies in the range adds its row of dy (ids outside it, e.g. −1 for padding, add
    nothing). Deterministic (no atomics)."""
    flat = ids.reshape(-1)
    if flat.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids must be int32 or int64, got {ids.dtype}")
    dy2 = dy.reshape(flat.numel(), -1) if dy.numel() else dy.reshape(0, dy.shape[-1])
    if dy2.shape[0] != flat.numel():
        raise ValueError(f"{flat.numel()} ids but dy holds {dy2.shape[0]} rows")
    if not (0 <= start < end):
        raise ValueError(f"row range [{start}, {end}) is empty")
    R, D = end - start, dy2.shape[1]
    if out is None:
        out = torch.empty(R, D, dtype=torch.float32, device=dy.device)
    elif out.shape != (R, D) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be contiguous fp32 [{R}, {D}], got {tuple(out.shape)}")
    if not kernels_run_on(dy.device):
        out.copy_(reference.embedding_dw_reference(flat, dy2, start, end))
        return out
    cfg, ieee, upcast = _gemm_meta(dy2)
    block_r, block_d = cfg["BLOCK_N"], cfg["BLOCK_K"]
    grid = (triton.cdiv(R, block_r), triton.cdiv(D, block_d))
    _embedding_dw_kernel[grid](
        flat, dy2, out, flat.numel(), D, start, R, dy2.stride(0), dy2.stride(1),
        DOT_IEEE=ieee, UPCAST=upcast, BLOCK_R=block_r, BLOCK_D=block_d, BLOCK_T=cfg["BLOCK_T"],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )  # fmt: skip
    return out


def adamw_slice_(
    weight_view: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    sc: StepScalars,
) -> None:
    """AdamW on one slice of a weight, in place: `weight_view` fp32 or bf16 (rows may be
    strided, columns unit-stride), `grad`, `exp_avg`, `exp_avg_sq` contiguous fp32 of its
    shape."""
    _check_adamw_operands(weight_view, exp_avg, exp_avg_sq)
    if grad.dtype != torch.float32 or grad.shape != weight_view.shape or not grad.is_contiguous():
        raise ValueError("grad must be contiguous fp32 shaped like the weight slice")
    if not kernels_run_on(weight_view.device):
        reference.adamw_slice_reference_(weight_view, grad, exp_avg, exp_avg_sq, sc)
        return
    if weight_view.dim() == 1:
        w2 = weight_view.view(1, -1)
    elif weight_view.dim() == 2:
        w2 = weight_view
    else:
        w2 = weight_view.view(weight_view.shape[0], -1)  # raises when rows are not contiguous
    if w2.shape[1] > 1 and w2.stride(1) != 1:
        raise ValueError("the weight slice's columns must be unit-stride")
    n = weight_view.numel()
    if n == 0:
        return
    w_bf16 = weight_view.dtype == torch.bfloat16
    w_arg = w2.view(torch.int16) if w_bf16 else w2
    C = w2.shape[1]
    _adamw_slice_kernel[(triton.cdiv(n, ADAMW_BLOCK),)](
        w_arg, grad, exp_avg, exp_avg_sq, n, C, w2.stride(0) if w2.shape[0] > 1 else C,
        float(sc.lr), float(sc.decay), float(sc.beta1), float(sc.beta2), float(sc.eps),
        float(sc.step_size), float(sc.bc2_sqrt),
        W_BF16=w_bf16, BLOCK=ADAMW_BLOCK,
    )  # fmt: skip


# --- autograd: the Functions patched modules call ---------------------------------------------


class Slot(Protocol):
    """The optimizer's side of one patched module: is its weight active, and what to do with
    the active slice's gradient work in backward."""

    def active(self) -> bool: ...

    def linear_backward(self, dy: torch.Tensor, x: torch.Tensor) -> None: ...

    def embedding_backward(self, ids: torch.Tensor, dy: torch.Tensor) -> None: ...


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the forward multiplies in: autocast's when it is on, else x's."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


class SlicedLinearFunction(torch.autograd.Function):
    """y = x·Wᵀ whose backward forms dX in full and only the active slice's weight gradient.

    `anchor` is a grad-requiring scalar the optimizer passes while the slot is active (so the
    graph reaches an active layer even when nothing below it needs gradients) and None otherwise
    (then, below every active layer, no graph is recorded: backward stops there).
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, anchor: torch.Tensor | None, slot: Slot
    ) -> torch.Tensor:
        dt = _compute_dtype(x)
        xc = x.to(dt)
        active = slot.active()
        ctx.slot = slot if active else None
        ctx.x_dtype = x.dtype
        ctx.save_for_backward(xc if active else None, weight)
        return torch.nn.functional.linear(xc, weight.to(dt))

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        xc, weight = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (dy @ weight.to(dy.dtype)).to(ctx.x_dtype)
        if ctx.slot is not None:
            ctx.slot.linear_backward(_as_2d(dy), _as_2d(xc.to(dy.dtype)))
        return dx, None, None, None


class SlicedEmbeddingFunction(torch.autograd.Function):
    """An embedding lookup whose backward forms only the active rows' gradient."""

    @staticmethod
    def forward(
        ctx: Any,
        ids: torch.Tensor,
        weight: torch.Tensor,
        anchor: torch.Tensor | None,
        slot: Slot,
        padding_idx: int | None,
    ) -> torch.Tensor:
        active = slot.active()
        ctx.slot = slot if active else None
        if active:
            ctx.save_for_backward(
                ids if padding_idx is None else ids.masked_fill(ids == padding_idx, -1)
            )
        return torch.nn.functional.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        if ctx.slot is not None:
            (ids,) = ctx.saved_tensors
            ctx.slot.embedding_backward(ids.reshape(-1), dy.reshape(ids.numel(), -1))
        return None, None, None, None, None
