"""Triton kernels of the SinkGD step for a group of same-shape matrices, with their launcher.

SinkGD's update is the gradient after L alternating ℓ2 normalisations of its rows (to norm
sqrt(cols)) and columns (to norm sqrt(rows)). Each normalisation rescales whole rows or whole
columns, so after any number of them the update is diag(a)·G·diag(b): the kernels keep only the
two scale vectors a (rows) and b (cols) and never materialise the normalised matrix, so the step
needs no gradient-sized buffer (the torch transcription clones the gradient and rewrites it 4L
times).

Per step and matrix: L launches of ``_sinkgd_row_kernel`` (reads G, updates a) and L of
``_sinkgd_col_kernel`` (reads G, updates b), then ``_sinkgd_apply_kernel``
(θ ← θ(1−ηλ) − η·a_i G_ij b_j). Bytes per element (fp32): 2L·4 (G read per half-iteration) + 12
(read θ, G; write θ) = 52 B at L = 5 (bf16: 26 B); about 4 FLOPs per element and half-iteration.
The matrices of a model are small enough to stay in L2 across the 2L passes.

The matrices of one group share their shape and dtype; their addresses travel in int64 pointer
tables, so one launch serves the whole group (the second grid axis picks the matrix).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.runtime.device import interpreting
from kernels.sage.reference import as_matrix

INTERPRET = interpreting()  # read once: triton fixed its mode at import
SINKGD_BYTES_PER_ELEMENT_PER_ITER = {torch.float32: 8, torch.bfloat16: 4, torch.float16: 4}


def reduce_configs() -> list[triton.Config]:
    """Tiles of the row and column reductions; one config under the interpreter."""
    if INTERPRET:
        return [triton.Config({"BLOCK_R": 32, "BLOCK_C": 128}, num_warps=4)]
    return [
        triton.Config({"BLOCK_R": br, "BLOCK_C": bc}, num_warps=w)
        for br, bc, w in ((16, 128, 4), (32, 64, 4), (8, 256, 4), (32, 128, 8))
    ]


def apply_configs() -> list[triton.Config]:
    """Tile of the apply kernel. One config on the GPU too: the kernel updates parameters that
    it reaches through a pointer table, which the autotuner could not restore between trials."""
    if INTERPRET:
        return [triton.Config({"BLOCK_R": 32, "BLOCK_C": 128}, num_warps=4)]
    return [triton.Config({"BLOCK_R": 4, "BLOCK_C": 256}, num_warps=4)]


@triton.autotune(configs=reduce_configs(), key=["n_rows", "n_cols"], restore_value=["a_ptr"])
@triton.jit
def _sinkgd_row_kernel(
    g_table,
    g_anchor,
    a_ptr,
    b_ptr,
    n_rows,
    n_cols,
    row_target,
    eps,
    FIRST: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Row normalisation of X = diag(a) G diag(b): a_i ← a_i / (‖X_i‖ + ε) · sqrt(cols), with
    ‖X_i‖ = a_i·sqrt(Σ_j (G_ij b_j)²). FIRST means a = b = 1. Reads G once (4 or 2 B/element)."""
    pid_r = tl.program_id(0)
    t = tl.program_id(1)
    g_ptr = tl.load(g_table + t).to(g_anchor.dtype)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < n_rows
    acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_mask = cols < n_cols
        mask = row_mask[:, None] & col_mask[None, :]
        offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        x = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if not FIRST:
            b = tl.load(b_ptr + t * n_cols + cols, mask=col_mask, other=0.0)
            x = x * b[None, :]
        acc += x * x
    norm = tl.sqrt(tl.sum(acc, axis=1))
    if FIRST:
        a = tl.full((BLOCK_R,), 1.0, dtype=tl.float32)
    else:
        a = tl.load(a_ptr + t * n_rows + rows, mask=row_mask, other=0.0)
    # a zero row stays zero whatever its scale: keep the scale rather than let it grow 1/ε a pass
    a = tl.where(norm > 0.0, a / (a * norm + eps) * row_target, a)
    tl.store(a_ptr + t * n_rows + rows, a, mask=row_mask)


@triton.autotune(configs=reduce_configs(), key=["n_rows", "n_cols"], restore_value=["b_ptr"])
@triton.jit
def _sinkgd_col_kernel(
    g_table,
    g_anchor,
    a_ptr,
    b_ptr,
    n_rows,
    n_cols,
    col_target,
    eps,
    FIRST: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Column normalisation of X = diag(a) G diag(b): b_j ← b_j / (‖X_:j‖ + ε) · sqrt(rows), with
    ‖X_:j‖ = b_j·sqrt(Σ_i (a_i G_ij)²). FIRST means b = 1. Reads G once (4 or 2 B/element)."""
    pid_c = tl.program_id(0)
    t = tl.program_id(1)
    g_ptr = tl.load(g_table + t).to(g_anchor.dtype)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < n_cols
    acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for r0 in range(0, n_rows, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_mask = rows < n_rows
        mask = row_mask[:, None] & col_mask[None, :]
        offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        x = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        a = tl.load(a_ptr + t * n_rows + rows, mask=row_mask, other=0.0)
        x = x * a[:, None]
        acc += x * x
    norm = tl.sqrt(tl.sum(acc, axis=0))
    if FIRST:
        b = tl.full((BLOCK_C,), 1.0, dtype=tl.float32)
    else:
        b = tl.load(b_ptr + t * n_cols + cols, mask=col_mask, other=0.0)
    b = tl.where(norm > 0.0, b / (b * norm + eps) * col_target, b)
    tl.store(b_ptr + t * n_cols + cols, b, mask=col_mask)


@triton.autotune(configs=apply_configs(), key=["n_rows", "n_cols"])
@triton.jit
def _sinkgd_apply_kernel(
    p_table,
    p_anchor,
    g_table,
    g_anchor,
    a_ptr,
    b_ptr,
    n_rows,
    n_cols,
    decay,
    lr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """θ_ij ← θ_ij·(1−ηλ) − η·(a_i G_ij b_j). Reads θ, G, writes θ: 12 B/element fp32, 6 B bf16."""
    n_col_blocks = tl.cdiv(n_cols, BLOCK_C)
    pid = tl.program_id(0)
    t = tl.program_id(1)
    pid_r = pid // n_col_blocks
    pid_c = pid % n_col_blocks
    p_ptr = tl.load(p_table + t).to(p_anchor.dtype)
    g_ptr = tl.load(g_table + t).to(g_anchor.dtype)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    row_mask = rows < n_rows
    col_mask = cols < n_cols
    mask = row_mask[:, None] & col_mask[None, :]
    offs = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(a_ptr + t * n_rows + rows, mask=row_mask, other=0.0)
    b = tl.load(b_ptr + t * n_cols + cols, mask=col_mask, other=0.0)
    x = a[:, None] * g * b[None, :]
    p = p * decay - lr * x
    tl.store(p_ptr + offs, p.to(p_anchor.dtype.element_ty), mask=mask)


_TABLES: dict[tuple[int, ...], torch.Tensor] = {}


def _pointer_table(tensors: list[torch.Tensor]) -> torch.Tensor:
    """An int64 device tensor of the tensors' addresses (cached: the caching allocator hands
    gradients the same addresses step after step)."""
    key = (tensors[0].device.index or 0, *(t.data_ptr() for t in tensors))
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) > 256:
            _TABLES.clear()
        ptrs = [t.data_ptr() for t in tensors]
        table = torch.tensor(ptrs, dtype=torch.int64).to(tensors[0].device)
        _TABLES[key] = table
    return table


def sinkgd_scales(
    grads: list[torch.Tensor], *, iters: int = 5, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The row and column scales (B, rows), (B, cols) in fp32 such that the SinkGD update of
    grads[k] is a[k, :, None] · G_k · b[k, None, :]. All grads share shape, dtype and device."""
    if iters < 1:
        raise ValueError("SinkGD needs at least one normalisation")
    g0 = as_matrix(grads[0])
    n_rows, n_cols = g0.shape
    for g in grads:
        if g.shape != grads[0].shape or g.dtype != g0.dtype or g.device != g0.device:
            raise ValueError("one SinkGD group holds tensors of one shape, dtype and device")
        if not g.is_contiguous():
            raise ValueError("SinkGD kernels need contiguous gradients")
    n = len(grads)
    a = torch.empty((n, n_rows), dtype=torch.float32, device=g0.device)
    b = torch.empty((n, n_cols), dtype=torch.float32, device=g0.device)
    table = _pointer_table(grads)
    row_target, col_target = math.sqrt(n_cols), math.sqrt(n_rows)

    def row_grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(n_rows, meta["BLOCK_R"]), n)

    def col_grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(n_cols, meta["BLOCK_C"]), n)

    for it in range(iters):
        first = it == 0
        _sinkgd_row_kernel[row_grid](table, g0, a, b, n_rows, n_cols, row_target, eps, FIRST=first)
        _sinkgd_col_kernel[col_grid](table, g0, a, b, n_rows, n_cols, col_target, eps, FIRST=first)
    return a, b


def sinkgd_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    *,
    lr: float,
    weight_decay: float,
    iters: int = 5,
    eps: float = 1e-8,
) -> None:
    """One SinkGD step on a group of same-shape parameters, in place, with the Triton kernels."""
    if len(params) != len(grads) or not params:
        raise ValueError("one gradient per parameter, at least one parameter")
    p0 = as_matrix(params[0])
    for p, g in zip(params, grads, strict=True):
        if p.shape != g.shape or p.dtype != params[0].dtype or not p.is_contiguous():
            raise ValueError("SinkGD parameters must be contiguous and match their gradients")
    a, b = sinkgd_scales(grads, iters=iters, eps=eps)
    n_rows, n_cols = p0.shape
    p_table = _pointer_table(params)
    g_table = _pointer_table(grads)

    def grid(meta: dict) -> tuple[int, int]:
        blocks = triton.cdiv(n_rows, meta["BLOCK_R"]) * triton.cdiv(n_cols, meta["BLOCK_C"])
        return (blocks, len(params))

    _sinkgd_apply_kernel[grid](
        p_table,
        p0,
        g_table,
        as_matrix(grads[0]),
        a,
        b,
        n_rows,
        n_cols,
        1.0 - lr * weight_decay,
        lr,
    )
