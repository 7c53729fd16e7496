"""ChunkFT's Triton kernels: the weight gradient of one active slice, read from strided views.

Both slicing strategies are one GEMM, ``out = dY_viewᵀ · X_view`` with fp32 accumulation; the
launcher picks the views (ChunkFT's official code names them by the dY/X axis they cut):

- "column": ``dW[s:e, :] = dY[:, s:e]ᵀ · X``  (output rows of W; a contiguous band of W)
- "row":    ``dW[:, s:e] = dYᵀ · X[:, s:e]``  (input columns of W)

`_sliced_dw_kernel` either stores the slice gradient (fp32) or, with FUSED, applies AdamW to the
matching tile of W and its slice-shaped fp32 states in the epilogue (FORGE's rule, imported from
`kernels.forge.kernels`), so the slice gradient is never written. `_embedding_dw_kernel` sums the
rows of dY whose token id falls in [s, e), deterministically (a one-hot GEMM in a fixed order,
no atomics). `_adamw_slice_kernel` is the element-wise AdamW step of a
slice whose gradient was stored (embedding, norms, or the unfused linear path).
"""

from __future__ import annotations

import functools

import triton
import triton.language as tl

from kernels.forge.kernels import (
    ADAMW,
    _apply_rule,
    _bf16_bits_to_fp32,
    _dyt_x_tile,
    _fp32_to_bf16_bits,
)
from kernels.runtime.device import interpreting


@functools.cache
def gemm_config(fp32_ieee: bool, fused: bool = False) -> dict[str, int]:
    """Tile shape of the slice GEMM: under the interpreter large enough that few programs run
    (each costs milliseconds there), tensor-core sized on the GPU; full-fp32 ("ieee") products
    run on the FMA units, so a smaller tile; the fused epilogue holds W, m and v tiles beside the
    accumulator, so a 64x64 tile (32 + 3x32 fp32 registers a thread at 4 warps, no spill)."""
    if interpreting():
        return {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_T": 32, "num_warps": 4, "num_stages": 1}
    if fused and not fp32_ieee:
        return {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_T": 64, "num_warps": 4, "num_stages": 3}
    if fp32_ieee:
        return {"BLOCK_N": 64, "BLOCK_K": 64, "BLOCK_T": 32, "num_warps": 4, "num_stages": 2}
    return {"BLOCK_N": 128, "BLOCK_K": 64, "BLOCK_T": 64, "num_warps": 4, "num_stages": 4}


@triton.jit
def _sliced_dw_kernel(
    dy_ptr,
    x_ptr,
    out_ptr,
    w_ptr,
    m_ptr,
    v_ptr,
    T,
    N,
    K,
    stride_dy_t,
    stride_dy_n,
    stride_x_t,
    stride_x_k,
    stride_w_n,
    stride_w_k,
    lr,
    decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    FUSED: tl.constexpr,
    W_BF16: tl.constexpr,
    DOT_IEEE: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """One [BLOCK_N, BLOCK_K] tile of G = dY_viewᵀ·X_view (dy_view [T, N], x_view [T, K], any
    strides), accumulated in fp32.

    Not FUSED: G is stored to `out` ([N, K] fp32 contiguous). Bytes: T·(N + K) operand bytes
    (re-reads hit L2) + 4·N·K written; FLOPs 2·T·N·K — for the slice only, never the whole W.
    FUSED: the tile updates W (strided view of the slice, fp32 or bf16 bits rounded to nearest)
    and its contiguous fp32 states m, v with AdamW; per element W read+write (8 B fp32, 4 B bf16)
    and 16 B of states, and the 8 B a stored gradient would cost (write + read back) are gone.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    n_ok = rn < N
    k_ok = rk < K
    acc = _dyt_x_tile(
        dy_ptr,
        x_ptr,
        rn,
        rk,
        n_ok,
        k_ok,
        T,
        stride_dy_n,
        stride_dy_t,
        stride_x_t,
        stride_x_k,
        BLOCK_N,
        BLOCK_K,
        BLOCK_T,
        UPCAST,
        DOT_IEEE,
    )

    mask = n_ok[:, None] & k_ok[None, :]
    offs = rn[:, None] * K + rk[None, :]  # the slice-shaped buffers (out, m, v) are contiguous
    if FUSED:
        w_offs = rn[:, None] * stride_w_n + rk[None, :] * stride_w_k
        if W_BF16:
            w = _bf16_bits_to_fp32(tl.load(w_ptr + w_offs, mask=mask, other=0))
        else:
            w = tl.load(w_ptr + w_offs, mask=mask, other=0.0)
        m = tl.load(m_ptr + offs, mask=mask, other=0.0)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0)
        w, m, v = _apply_rule(
            w, acc, m, v, lr, decay, 0.0, beta1, beta2, eps, step_size, bc2_sqrt, 0.0, 0,
            ADAMW, False,
        )  # fmt: skip
        if W_BF16:
            tl.store(w_ptr + w_offs, _fp32_to_bf16_bits(w, offs, 0, False), mask=mask)
        else:
            tl.store(w_ptr + w_offs, w, mask=mask)
        tl.store(m_ptr + offs, m, mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)
    else:
        tl.store(out_ptr + offs, acc, mask=mask)


@triton.jit
def _embedding_dw_kernel(
    ids_ptr,
    dy_ptr,
    out_ptr,
    T,
    D,
    start,
    R,
    stride_dy_t,
    stride_dy_d,
    DOT_IEEE: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """out[r, d] = Σ_t [ids[t] == start + r] · dY[t, d], one [BLOCK_R, BLOCK_D] tile a program
    (out [R, D] fp32 contiguous).

    The sum is a GEMM of a one-hot [BLOCK_R, BLOCK_T] matrix with dY's rows: exact products,
    fp32 accumulation in a fixed order (deterministic, no atomics), every element of `out`
    written (zero for rows no token hits). Bytes: dY read once per row block (T·D·2 B each) and
    4·R·D written; FLOPs 2·R·T·D on the tensor cores, trivial beside the model's GEMMs.
    """
    rr = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    rt = tl.arange(0, BLOCK_T)
    d_ok = rd < D
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        t_ok = (t0 + rt) < T
        tok = tl.load(ids_ptr + t0 + rt, mask=t_ok, other=-1)
        rows = tl.load(
            dy_ptr + (t0 + rt)[:, None] * stride_dy_t + rd[None, :] * stride_dy_d,
            mask=t_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        hit = (tok[None, :] - start) == rr[:, None]
        if UPCAST:
            onehot = tl.where(hit, 1.0, 0.0)
            rows = rows.to(tl.float32)
        else:
            onehot = tl.where(hit, 1.0, 0.0).to(rows.dtype)
        if DOT_IEEE:
            acc = tl.dot(onehot, rows, acc, input_precision="ieee")
        else:
            acc = tl.dot(onehot, rows, acc)
    mask = (rr < R)[:, None] & d_ok[None, :]
    tl.store(out_ptr + rr[:, None] * D + rd[None, :], acc, mask=mask)


@triton.jit
def _adamw_slice_kernel(
    w_ptr,
    g_ptr,
    m_ptr,
    v_ptr,
    n,
    C,
    stride_w_r,
    lr,
    decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    W_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """AdamW on one slice viewed as [R, C]: W rows `stride_w_r` apart (unit column stride), the
    fp32 gradient and states contiguous. Per element: W read + write (8 B fp32, 4 B bf16),
    g read (4 B), m and v read + write (16 B); ~15 FLOPs."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    w_offs = (offs // C) * stride_w_r + offs % C
    if W_BF16:
        w = _bf16_bits_to_fp32(tl.load(w_ptr + w_offs, mask=mask, other=0))
    else:
        w = tl.load(w_ptr + w_offs, mask=mask, other=0.0)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    w, m, v = _apply_rule(
        w, g, m, v, lr, decay, 0.0, beta1, beta2, eps, step_size, bc2_sqrt, 0.0, 0, ADAMW, False
    )
    if W_BF16:
        tl.store(w_ptr + w_offs, _fp32_to_bf16_bits(w, offs, 0, False), mask=mask)
    else:
        tl.store(w_ptr + w_offs, w, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
