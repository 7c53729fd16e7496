"""SAGE's Triton kernels (and Lion's, its H ≡ 1 special case), and SinkGD's for the matrices
of the hybrids. Launchers, scalars and grids are in ``launch.py``.

SAGE: one step on a parameter viewed as (rows, cols) takes three launches:

1. ``_sage_col_abs_sum_kernel``: partial column sums of |g| over slices of rows (deterministic:
   no atomics; the slices are summed in a fixed order by the next kernel).
2. ``_sage_scale_kernel``: one program over the cols: s = column mean, S ← β2 S + (1−β2) s,
   Ŝ = S / (1−β2^t), σ, γ, and the bounded scale H = min(σ/(Ŝ+ε), γ/(s+ε), 1).
3. ``_sage_apply_kernel``: the fused elementwise pass: decoupled decay, sign of the momentum
   interpolation, H, the momentum update.

Bytes per element of the parameter (fp32): 4 (read g for the statistic) + 20 (read p, g, m; write
p, m) = 24 B, against 28 B for AdamW (read p, g, m, v; write p, m, v). With bf16 parameters and
momentum: 12 B against AdamW's 14 B. The scale kernel moves O(cols) bytes.

SinkGD: the update is the gradient after L alternating ℓ2 normalisations of its rows (to norm
sqrt(cols)) and columns (to norm sqrt(rows)). Each normalisation rescales whole rows or whole
columns, so after any number of them the update is diag(a)·G·diag(b): the kernels keep only the
two scale vectors a (rows) and b (cols) and never materialise the normalised matrix, so the step
needs no gradient-sized buffer (the torch transcription clones the gradient and rewrites it 4L
times). Per step and matrix: L launches of ``_sinkgd_row_kernel`` (reads G, updates a) and L of
``_sinkgd_col_kernel`` (reads G, updates b), then ``_sinkgd_apply_kernel``
(θ ← θ(1−ηλ) − η·a_i G_ij b_j). Bytes per element (fp32): 2L·4 (G read per half-iteration) + 12
(read θ, G; write θ) = 52 B at L = 5 (bf16: 26 B); about 4 FLOPs per element and half-iteration.
The matrices of one group share their shape and dtype; their addresses travel in int64 pointer
tables, so one launch serves the whole group (the second grid axis picks the matrix).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.runtime.device import interpreting

INTERPRET = interpreting()  # read once: triton fixed its mode at import
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# bytes the SAGE step must move per parameter element, by parameter dtype (see module docstring)
SAGE_BYTES_PER_ELEMENT = {torch.float32: 24, torch.bfloat16: 12, torch.float16: 12}
LION_BYTES_PER_ELEMENT = {torch.float32: 20, torch.bfloat16: 10, torch.float16: 10}
ADAMW_BYTES_PER_ELEMENT = {torch.float32: 28, torch.bfloat16: 14, torch.float16: 14}
SINKGD_BYTES_PER_ELEMENT_PER_ITER = {torch.float32: 8, torch.bfloat16: 4, torch.float16: 4}


def _tiles(shapes: tuple[tuple[int, int, int], ...]) -> list[triton.Config]:
    """(BLOCK_R, BLOCK_C, warps) tiles as configs; the first alone under the interpreter (more
    than one config crashes its autotuner)."""
    if INTERPRET:
        return [triton.Config({"BLOCK_R": 32, "BLOCK_C": 128}, num_warps=4)]
    return [triton.Config({"BLOCK_R": br, "BLOCK_C": bc}, num_warps=w) for br, bc, w in shapes]


def col_sum_configs() -> list[triton.Config]:
    """Tiles of SAGE's column-statistic kernel."""
    return _tiles(((32, 128, 4), (16, 256, 4), (8, 512, 4), (64, 128, 8), (32, 256, 8)))


def apply_configs() -> list[triton.Config]:
    """Tiles of SAGE's fused apply kernel."""
    return _tiles(((4, 256, 4), (8, 256, 4), (2, 512, 4), (4, 512, 8), (16, 128, 4)))


def sinkgd_reduce_configs() -> list[triton.Config]:
    """Tiles of SinkGD's row and column reductions."""
    return _tiles(((16, 128, 4), (32, 64, 4), (8, 256, 4), (32, 128, 8)))


def sinkgd_apply_configs() -> list[triton.Config]:
    """Tile of SinkGD's apply kernel. One config on the GPU too: the kernel updates parameters
    that it reaches through a pointer table, which the autotuner could not restore between
    trials."""
    return _tiles(((4, 256, 4),))


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


@triton.autotune(configs=sinkgd_reduce_configs(), key=["n_rows", "n_cols"], restore_value=["a_ptr"])
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


@triton.autotune(configs=sinkgd_reduce_configs(), key=["n_rows", "n_cols"], restore_value=["b_ptr"])
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


@triton.autotune(configs=sinkgd_apply_configs(), key=["n_rows", "n_cols"])
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
