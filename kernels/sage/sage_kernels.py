"""Triton kernels of the SAGE step (and of Lion, its H ≡ 1 special case), with their launchers.

One SAGE step on a parameter viewed as (rows, cols) takes three launches:

1. ``_sage_col_abs_sum_kernel``: partial column sums of |g| over slices of rows (deterministic:
   no atomics; the slices are summed in a fixed order by the next kernel).
2. ``_sage_scale_kernel``: one program over the cols: s = column mean, S ← β2 S + (1−β2) s,
   Ŝ = S / (1−β2^t), σ, γ, and the bounded scale H = min(σ/(Ŝ+ε), γ/(s+ε), 1).
3. ``_sage_apply_kernel``: the fused elementwise pass: decoupled decay, sign of the momentum
   interpolation, H, the momentum update.

Bytes per element of the parameter (fp32): 4 (read g for the statistic) + 20 (read p, g, m; write
p, m) = 24 B, against 28 B for AdamW (read p, g, m, v; write p, m, v). With bf16 parameters and
momentum: 12 B against AdamW's 14 B. The scale kernel moves O(cols) bytes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl

from kernels.runtime.device import interpreting
from kernels.sage.reference import MomentumOrder, as_matrix

INTERPRET = interpreting()  # read once: triton fixed its mode at import
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# bytes the SAGE step must move per parameter element, by parameter dtype (see module docstring)
SAGE_BYTES_PER_ELEMENT = {torch.float32: 24, torch.bfloat16: 12, torch.float16: 12}
LION_BYTES_PER_ELEMENT = {torch.float32: 20, torch.bfloat16: 10, torch.float16: 10}
ADAMW_BYTES_PER_ELEMENT = {torch.float32: 28, torch.bfloat16: 14, torch.float16: 14}


def col_sum_configs() -> list[triton.Config]:
    """Tiles of the column-statistic kernel; one config under the interpreter."""
    if INTERPRET:
        return [triton.Config({"BLOCK_R": 32, "BLOCK_C": 128}, num_warps=4)]
    return [
        triton.Config({"BLOCK_R": br, "BLOCK_C": bc}, num_warps=w)
        for br, bc, w in ((32, 128, 4), (16, 256, 4), (8, 512, 4), (64, 128, 8), (32, 256, 8))
    ]


def apply_configs() -> list[triton.Config]:
    """Tiles of the fused apply kernel; one config under the interpreter."""
    if INTERPRET:
        return [triton.Config({"BLOCK_R": 32, "BLOCK_C": 128}, num_warps=4)]
    return [
        triton.Config({"BLOCK_R": br, "BLOCK_C": bc}, num_warps=w)
        for br, bc, w in ((4, 256, 4), (8, 256, 4), (2, 512, 4), (4, 512, 8), (16, 128, 4))
    ]


@triton.autotune(configs=col_sum_configs(), key=["n_rows", "n_cols"])
@triton.jit
def _sage_col_abs_sum_kernel(
    g_ptr,
    partial_ptr,
    n_rows,
    n_cols,
    rows_per_split,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """partial[k, j] = Σ_{i in slice k} |g[i, j]|, accumulated in fp32.

    Reads 4 B (fp32) or 2 B (bf16) per element and writes n_splits × cols floats; 1 FLOP/element.
    """
    pid_c = tl.program_id(0)
    split = tl.program_id(1)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < n_cols
    row_start = split * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, n_rows)
    acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for r0 in range(row_start, row_end, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        mask = (rows < row_end)[:, None] & col_mask[None, :]
        offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        acc += tl.abs(g)
    tl.store(partial_ptr + split * n_cols + cols, tl.sum(acc, axis=0), mask=col_mask)


@triton.jit
def _sage_scale_kernel(
    partial_ptr,
    s_ema_ptr,
    h_ptr,
    n_cols,
    n_splits,
    n_rows_f,
    beta2,
    one_minus_beta2,
    bias_correction,
    eps,
    BLOCK: tl.constexpr,
):
    """The bounded O(cols) scale, in one program: S ← β2 S + (1−β2) s, Ŝ = S/(1−β2^t),
    H = min(σ/(Ŝ+ε), γ/(s+ε), 1) with σ = rms(Ŝ), γ = rms(s).

    Moves n_splits·4 + 4 + 4 + 4 B per column (partials, S read and write, H); h_ptr holds s
    between the two passes. O(cols) work, negligible next to the apply pass.
    """
    sum_sq_hat = tl.zeros((BLOCK,), dtype=tl.float32)
    sum_sq_s = tl.zeros((BLOCK,), dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK):
        cols = c0 + tl.arange(0, BLOCK)
        mask = cols < n_cols
        col_sum = tl.zeros((BLOCK,), dtype=tl.float32)
        for k in range(0, n_splits):
            col_sum += tl.load(partial_ptr + k * n_cols + cols, mask=mask, other=0.0)
        s = col_sum / n_rows_f
        s_ema = tl.load(s_ema_ptr + cols, mask=mask, other=0.0)
        s_ema = beta2 * s_ema + one_minus_beta2 * s
        tl.store(s_ema_ptr + cols, s_ema, mask=mask)
        tl.store(h_ptr + cols, s, mask=mask)
        s_hat = s_ema / bias_correction
        sum_sq_hat += tl.where(mask, s_hat * s_hat, 0.0)
        sum_sq_s += tl.where(mask, s * s, 0.0)
    sigma = tl.sqrt(tl.sum(sum_sq_hat, axis=0) / n_cols)
    gamma = tl.sqrt(tl.sum(sum_sq_s, axis=0) / n_cols)
    for c0 in range(0, n_cols, BLOCK):
        cols = c0 + tl.arange(0, BLOCK)
        mask = cols < n_cols
        s = tl.load(h_ptr + cols, mask=mask, other=0.0)
        s_hat = tl.load(s_ema_ptr + cols, mask=mask, other=0.0) / bias_correction
        h = tl.minimum(sigma / (s_hat + eps), gamma / (s + eps))
        h = tl.minimum(h, 1.0)
        tl.store(h_ptr + cols, h, mask=mask)


@triton.autotune(
    configs=apply_configs(), key=["n_rows", "n_cols"], restore_value=["p_ptr", "m_ptr"]
)
@triton.jit
def _sage_apply_kernel(
    p_ptr,
    g_ptr,
    m_ptr,
    h_ptr,
    n_rows,
    n_cols,
    decay,
    lr,
    beta1,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    HAS_SCALE: tl.constexpr,
    CODE_ORDER: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """θ ← θ·(1−ηλ) − η·sign(β1 m' + (1−β1) g)·H_col ;  m ← β2 m + (1−β2) g, in fp32 registers.

    m' is m_{t−1} (paper order) or m_t (CODE_ORDER). HAS_SCALE=False is Lion (H ≡ 1).
    Reads p, g, m and writes p, m: 20 B/element fp32, 10 B bf16 (+4 B per column for H, once per
    tile); about 10 FLOPs/element.
    """
    # one flat grid (CUDA caps the second grid dimension at 65535 blocks)
    n_col_blocks = tl.cdiv(n_cols, BLOCK_C)
    pid = tl.program_id(0)
    pid_r = pid // n_col_blocks
    pid_c = pid % n_col_blocks
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < n_cols
    mask = (rows < n_rows)[:, None] & col_mask[None, :]
    offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    m_next = beta2 * m + one_minus_beta2 * g
    m_sign = m_next if CODE_ORDER else m
    u = beta1 * m_sign + one_minus_beta1 * g
    c = tl.where(u > 0.0, 1.0, tl.where(u < 0.0, -1.0, 0.0))
    if HAS_SCALE:
        h = tl.load(h_ptr + cols, mask=col_mask, other=0.0)
        c = c * h[None, :]
    p = p * decay - lr * c
    tl.store(p_ptr + offs, p.to(p_ptr.dtype.element_ty), mask=mask)
    tl.store(m_ptr + offs, m_next.to(m_ptr.dtype.element_ty), mask=mask)


# the scale kernel's column block (one program walks the columns in blocks of this size)
SCALE_BLOCK = 1024
SCALE_WARPS = 4


class SageScalars(NamedTuple):
    """A group's step scalars, formed once per step on the host in double precision (as torch
    does with Python scalars) and handed to the kernels as floats."""

    apply: tuple[float, float, float, float, float, float]  # decay, lr, β1, 1−β1, β2, 1−β2
    beta2: float
    one_minus_beta2: float
    eps: float
    code_order: bool


def sage_scalars(
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float = 0.0,
    order: MomentumOrder = "paper",
) -> SageScalars:
    """The scalars of one step (floats always: an int would compile another kernel variant)."""
    if order not in ("paper", "code"):
        raise ValueError(f"order must be 'paper' or 'code', not {order!r}")
    lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
    wd, eps = float(weight_decay), float(eps)
    return SageScalars(
        apply=(1.0 - lr * wd, lr, beta1, 1.0 - beta1, beta2, 1.0 - beta2),
        beta2=beta2,
        one_minus_beta2=1.0 - beta2,
        eps=eps,
        code_order=order == "code",
    )


def cdiv(a: int, b: int) -> int:
    """Ceiling division of ints (`triton.cdiv` is a JIT-aware function, µs a call on the host)."""
    return -(-a // b)


_TARGET_PROGRAMS: dict[tuple[str, int | None], int] = {}


def _target_programs(device: torch.device) -> int:
    """Programs the column statistic aims for: 4 per SM (cached per device)."""
    key = (device.type, device.index)
    n = _TARGET_PROGRAMS.get(key)
    if n is None:
        if INTERPRET or device.type != "cuda":
            n = 4
        else:
            n = 4 * torch.cuda.get_device_properties(device).multi_processor_count
        _TARGET_PROGRAMS[key] = n
    return n


def row_splits(n_rows: int, n_cols: int, device: torch.device) -> tuple[int, int]:
    """(n_splits, rows_per_split) of the column statistic's deterministic split reduction."""
    n_col_blocks = cdiv(n_cols, 128)
    n_splits = max(1, min(n_rows, _target_programs(device) // n_col_blocks))
    rows_per_split = cdiv(n_rows, n_splits)
    return cdiv(n_rows, rows_per_split), rows_per_split


def apply_grid(n_rows: int, n_cols: int, meta: dict[str, Any]) -> int:
    """Programs of the apply kernel: one per (BLOCK_R, BLOCK_C) tile, on a flat grid."""
    return cdiv(n_rows, meta["BLOCK_R"]) * cdiv(n_cols, meta["BLOCK_C"])


def _check(p: torch.Tensor, *others: torch.Tensor) -> None:
    if p.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"SAGE kernels take fp32, bf16 or fp16 parameters, not {p.dtype}")
    for t in (p, *others):
        if not t.is_contiguous():
            raise ValueError("SAGE kernels need contiguous tensors")
        if t.device != p.device:
            raise ValueError("all tensors of one step must be on one device")


def launch_col_abs_sum(gm: torch.Tensor, partial: torch.Tensor, rows_per_split: int) -> Any:
    """Launch the column statistic of the (rows, cols) gradient `gm` into `partial`
    (n_splits, cols), as `row_splits` cuts the rows; returns what the launch returned (the
    compiled kernel on a GPU)."""
    n_rows, n_cols = gm.shape
    n_splits = partial.shape[0]

    def grid(meta: dict) -> tuple[int, int]:
        return (cdiv(n_cols, meta["BLOCK_C"]), n_splits)

    return _sage_col_abs_sum_kernel[grid](gm, partial, n_rows, n_cols, rows_per_split)


def launch_scale(
    partial: torch.Tensor,
    s_ema: torch.Tensor,
    h: torch.Tensor,
    n_rows: int,
    beta2: float,
    bias_correction: float,
    eps: float,
) -> Any:
    """Launch the scale kernel (one program): S and H from the column partials."""
    return _sage_scale_kernel[(1,)](
        partial,
        s_ema,
        h,
        h.numel(),
        partial.shape[0],
        float(n_rows),
        beta2,
        1.0 - beta2,
        bias_correction,
        eps,
        BLOCK=SCALE_BLOCK,
        num_warps=SCALE_WARPS,
    )


def launch_apply(
    pm: torch.Tensor,
    gm: torch.Tensor,
    mm: torch.Tensor,
    h: torch.Tensor,
    sc: SageScalars,
    *,
    has_scale: bool,
) -> Any:
    """Launch the fused apply pass on (rows, cols) views; `h` is ignored without a scale."""
    n_rows, n_cols = pm.shape

    def grid(meta: dict) -> tuple[int]:
        return (apply_grid(n_rows, n_cols, meta),)

    return _sage_apply_kernel[grid](
        pm,
        gm,
        mm,
        h,
        n_rows,
        n_cols,
        *sc.apply,
        HAS_SCALE=has_scale,
        CODE_ORDER=sc.code_order,
    )


def sage_column_abs_sum_partials(g: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Partial column sums of |g| (n_splits, cols) in fp32, and the row count they cover."""
    gm = as_matrix(g)
    n_rows, n_cols = gm.shape
    n_splits, rows_per_split = row_splits(n_rows, n_cols, g.device)
    partial = torch.empty((n_splits, n_cols), dtype=torch.float32, device=g.device)
    launch_col_abs_sum(gm, partial, rows_per_split)
    return partial, n_rows


def sage_step_(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    s_ema: torch.Tensor,
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    order: MomentumOrder = "paper",
    scale_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One SAGE step with the Triton kernels, in place on p, m (dtype of p) and s_ema (fp32,
    (cols,)); returns H (fp32, (cols,)), written into `scale_out` when given. `step` counts from 1.

    The general entry: it checks, allocates its scratch and goes through Triton's launcher on
    every call. The optimizers step each parameter through a bound `launch.SageStepPlan`.
    """
    _check(p, g, m)
    if s_ema.dtype != torch.float32 or not s_ema.is_contiguous():
        raise TypeError("s_ema must be a contiguous fp32 tensor")
    sc = sage_scalars(
        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps, order=order
    )
    if step < 1:
        raise ValueError("step counts from 1")
    pm, gm, mm = as_matrix(p), as_matrix(g), as_matrix(m)
    n_rows, n_cols = pm.shape
    if s_ema.numel() != n_cols:
        raise ValueError(f"s_ema has {s_ema.numel()} entries, the parameter has {n_cols} columns")
    h = scale_out
    if h is None:
        h = torch.empty(n_cols, dtype=torch.float32, device=p.device)
    elif h.numel() != n_cols or h.dtype != torch.float32 or not h.is_contiguous():
        raise ValueError("scale_out must be a contiguous fp32 tensor with one entry per column")
    partial, _ = sage_column_abs_sum_partials(g)
    launch_scale(partial, s_ema, h, n_rows, sc.beta2, 1.0 - sc.beta2**step, sc.eps)
    launch_apply(pm, gm, mm, h, sc, has_scale=True)
    return h


def lion_step_(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
) -> None:
    """One Lion step with the SAGE apply kernel (H ≡ 1), in place on p and m."""
    _check(p, g, m)
    sc = sage_scalars(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay)
    pm, gm, mm = as_matrix(p), as_matrix(g), as_matrix(m)
    launch_apply(pm, gm, mm, pm, sc, has_scale=False)
