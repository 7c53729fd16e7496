"""Triton kernels of FP4 training (arXiv 2501.17116): the E2M1 quantizer, the DGE derivative and
the weight gradient with the DGE fused into its epilogue.

Every kernel does its arithmetic in fp32 right after the load (the interpreter cannot compute on
bf16) and writes low-precision results as bit patterns built by hand (e4m3 bytes, E2M1 nibbles),
never through an fp32 → fp8 ``.to()`` (wrong for ~2.5% of values under the interpreter). The only
difference between the interpreter and the GPU is the operand type of ``tl.dot`` (fp32 under the
interpreter, the input's bf16/fp16 on the GPU), chosen by a constexpr.
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels.runtime.device import interpreting

# OUT_MODE of the quantizer
OUT_DEQUANT = 0  # dequantized values in the output buffer's dtype
OUT_E4M3 = 1  # the scaled grid value as an e4m3 byte (what torch._scaled_mm reads)
OUT_PACKED = 2  # E2M1 codes, two a byte, even element in the low nibble
# SCALE_MODE
SCALE_POW2 = 0  # 2^⌊log2(6/amax)⌋ (the paper's, MXFP4's E8M0)
SCALE_NVFP4 = 1  # e4m3 block scale times an fp32 tensor scale
# CLAMP
CLAMP_NONE = 0
CLAMP_PER_ROW = 1  # lo[row], hi[row]
CLAMP_TENSOR = 2  # lo[0], hi[0]

MAX_BLOCK_N = 8192  # longest row held in one tile; longer rows take two passes
# bf16 outputs rounded by integer ops under the interpreter (its cast truncates), cvt.rn on GPUs
ROUND_BY_HAND: tl.constexpr = tl.constexpr(interpreting())


def quantize_tile(row_len: int, max_block_n: int = MAX_BLOCK_N) -> tuple[int, int, int]:
    """(BLOCK_M rows, BLOCK_N columns, num_warps) of the quantizer for rows of `row_len`:
    ~4096 elements a program (~8 KB of bf16 in flight), a whole row when it fits, 8 elements a
    thread (ptxas for sm_90: 40-95 registers, no spills; 32 a thread needed 180-255 and spilled)."""
    block_n = min(triton.next_power_of_2(max(row_len, 2)), max_block_n)
    block_m = max(1, min(64, 4096 // block_n))
    if interpreting():
        return block_m, block_n, 1
    return block_m, block_n, max(4, min(32, block_m * block_n // 256))


@triton.jit
def _pow2_exponent(amax):
    """e = ⌊log2(6/amax)⌋ exactly from amax's bits: (2 if mantissa ≤ 1.5 else 1) − exponent;
    amax = 0 → 0; clamped to [−126, 126] (subnormal amax lands on 126)."""
    bits = amax.to(tl.int32, bitcast=True)
    biased = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    e = tl.where(mant <= 0x400000, 2, 1) - (biased - 127)
    e = tl.where(amax == 0.0, 0, e)
    return tl.minimum(tl.maximum(e, -126), 126)


@triton.jit
def _exp2_int(e):
    """2^e as fp32 for integer e in [−126, 127], built from its bits (exact)."""
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _e4m3_round(v):
    """Non-negative fp32 → nearest-even e4m3 value (fp32), saturating at 448, by hand."""
    bits = v.to(tl.int32, bitcast=True)
    p = tl.maximum(((bits >> 23) & 0xFF) - 127, -6)  # e4m3's smallest normal exponent is −6
    y = v * _exp2_int(3 - p)  # exact: in [8, 16) for normals, [0, 8) below 2^−6
    f = y.to(tl.int32)  # floor (y ≥ 0)
    d = y - f.to(tl.float32)
    up = (d > 0.5) | ((d == 0.5) & ((f & 1) == 1))
    r = (f + up.to(tl.int32)).to(tl.float32) * _exp2_int(p - 3)
    return tl.minimum(r, 448.0)


@triton.jit
def _to_out(v, ptr):
    """fp32 → the element type of `ptr`. Under the interpreter bf16 is rounded to nearest even by
    hand (its own fp32 → bf16 cast truncates); on the GPU the cast is cvt.rn (the same bits for
    every non-NaN value, one instruction instead of six integer ops an element)."""
    if ROUND_BY_HAND:  # noqa: SIM102  (two constexpr tests, kept apart for the jit)
        if ptr.dtype.element_ty == tl.bfloat16:
            bits = v.to(tl.int32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536  # keep the high 16 bits, rounded
            v = bits.to(tl.float32, bitcast=True)
    return v.to(ptr.dtype.element_ty)  # triton rounds fp32 → bf16/fp16 to nearest even


@triton.jit
def _round_to_grid(s):
    """The signed E2M1 grid value of scaled values, MS-AMP's ties (a threshold goes to the larger
    signed neighbour: +0.25→0.5, −0.25→0, −5→−4), saturating at ±6; NaN → 0; zero is +0.

    The grid is uniform with step 0.5 below |s| = 2, 1 below 4 and 2 up to 6, so v = s/step is
    rounded half up: floor(v) + (v − floor(v) ≥ 0.5). Exact: step is a power of two, and
    v − floor(v) is exact (Sterbenz) except for v in (−0.5, 0), where it is > 0.5 either way.
    ~15 ops an element where the threshold ladder (`_magnitude_index`) took ~35."""
    s = tl.where(s == s, s, 0.0)
    s = tl.minimum(tl.maximum(s, -6.0), 6.0)
    a = tl.abs(s)
    small = a < 2.0
    mid = a < 4.0
    inv_step = tl.where(small, 2.0, tl.where(mid, 1.0, 0.5))
    step = tl.where(small, 0.5, tl.where(mid, 1.0, 2.0))
    v = s * inv_step
    f = tl.floor(v)
    return (f + tl.where(v - f >= 0.5, 1.0, 0.0)) * step  # −1 + 1 = +0: zero is never −0


@triton.jit
def _grid_e4m3_bits(q):
    """The e4m3 byte of a signed grid value (fp32, exact): fp32's exponent and top mantissa bits
    rebiased (127 → 7) for non-zero values, the sign bit at 0x80 (int32 ops only)."""
    bits = q.to(tl.int32, bitcast=True)
    mag = bits & 0x7FFFFFFF
    b = tl.where(mag == 0, 0, (mag >> 20) - 0x3C0)
    return (b | ((bits >> 24) & 0x80)).to(tl.uint8)


@triton.jit
def _magnitude_index(s):
    """The released kernel's threshold ladder, kept as the oracle of `_round_to_grid`'s test:
    index 0..7 into {0, .5, 1, 1.5, 2, 3, 4, 6} of scaled values and their sign, MS-AMP's
    ties (a threshold goes to the larger signed neighbour), saturating; NaN → index 0."""
    neg = s < 0.0
    a = tl.abs(s)
    idx = tl.where(neg, a > 0.25, a >= 0.25).to(tl.int32)
    idx += tl.where(neg, a > 0.75, a >= 0.75).to(tl.int32)
    idx += tl.where(neg, a > 1.25, a >= 1.25).to(tl.int32)
    idx += tl.where(neg, a > 1.75, a >= 1.75).to(tl.int32)
    idx += tl.where(neg, a > 2.5, a >= 2.5).to(tl.int32)
    idx += tl.where(neg, a > 3.5, a >= 3.5).to(tl.int32)
    idx += tl.where(neg, a > 5.0, a >= 5.0).to(tl.int32)
    return idx, neg & (idx > 0)


@triton.jit
def _grid_value(idx):
    """|grid value| of an index (fp32)."""
    v = tl.where(idx <= 4, idx.to(tl.float32) * 0.5, 3.0)
    v = tl.where(idx == 6, 4.0, v)
    return tl.where(idx == 7, 6.0, v)


@triton.jit
def _e4m3_bits(idx, neg):
    """The e4m3 byte of a signed grid value: exponent field from the index, sign bit 0x80."""
    b = tl.where(idx == 1, 0x30, 0)
    b = tl.where(idx == 2, 0x38, b)
    b = tl.where(idx == 3, 0x3C, b)
    b = tl.where(idx == 4, 0x40, b)
    b = tl.where(idx == 5, 0x44, b)
    b = tl.where(idx == 6, 0x48, b)
    b = tl.where(idx == 7, 0x4C, b)
    return (b | tl.where(neg, 0x80, 0)).to(tl.uint8)


@triton.jit
def _load_clamped(x_ptr, lo_ptr, hi_ptr, rows, cols, mask, row_len, CLAMP: tl.constexpr):
    """(x as fp32, x clamped to its bounds) of a tile."""
    offs = rows.to(tl.int64)[:, None] * row_len + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if CLAMP == 1:
        lo = tl.load(lo_ptr + rows)
        hi = tl.load(hi_ptr + rows)
        xc = tl.minimum(tl.maximum(x, lo[:, None]), hi[:, None])
    elif CLAMP == 2:
        lo = tl.load(lo_ptr)
        hi = tl.load(hi_ptr)
        xc = tl.minimum(tl.maximum(x, lo), hi)
    else:
        xc = x
    return x, xc


@triton.jit
def _quantize_store(
    x,
    xc,
    rows,
    row_ok,
    c0,
    mult,
    inv_mult,
    bad,
    out_ptr,
    res_ptr,
    row_len,
    OUT_MODE: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    WRITE_RES: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Quantize one tile with its rows' multipliers and store codes, values and residual."""
    if SCALE_MODE == 1:
        safe = tl.where(inv_mult > 0.0, inv_mult, 1.0)[:, None]
        s = tl.where(inv_mult[:, None] > 0.0, tl.div_rn(xc, safe), 0.0)
    else:
        s = xc * mult[:, None]
    q = _round_to_grid(s)
    cols = c0 + tl.arange(0, BLOCK_N)
    mask = row_ok[:, None] & (cols < row_len)[None, :]
    offs = rows.to(tl.int64)[:, None] * row_len + cols[None, :]
    if OUT_MODE == 0:
        v = tl.where(bad[:, None], float("nan"), q * inv_mult[:, None])
        tl.store(out_ptr + offs, _to_out(v, out_ptr), mask=mask)
    elif OUT_MODE == 1:
        tl.store(out_ptr + offs, _grid_e4m3_bits(q), mask=mask)
    else:
        b = _grid_e4m3_bits(q).to(tl.int32)
        e = b & 0x7F  # 0, 0x30, 0x38, 0x3C, ..., 0x4C → index 0..7
        idx = tl.where(e == 0x30, 1, tl.maximum((e >> 2) - 12, 0))
        code = idx | ((b >> 4) & 8)
        even, odd = tl.split(tl.reshape(code, [code.shape[0], BLOCK_N // 2, 2]))
        byte = (even | (odd << 4)).to(tl.uint8)
        half_cols = c0 // 2 + tl.arange(0, BLOCK_N // 2)
        half_mask = row_ok[:, None] & (half_cols < row_len // 2)[None, :]
        half_offs = rows.to(tl.int64)[:, None] * (row_len // 2) + half_cols[None, :]
        tl.store(out_ptr + half_offs, byte, mask=half_mask)
    if WRITE_RES:
        tl.store(res_ptr + offs, _to_out(x - xc, res_ptr), mask=mask)


@triton.jit
def _fp4_quantize_kernel(
    x_ptr,
    out_ptr,
    scale_ptr,
    res_ptr,
    lo_ptr,
    hi_ptr,
    nv_ptr,
    n_rows,
    row_len,
    OUT_MODE: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    CLAMP: tl.constexpr,
    WRITE_RES: tl.constexpr,
    SINGLE_PASS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """FP4 quantization of BLOCK_M rows (scale groups) of a contiguous (n_rows, row_len) tensor.

    Per row: clamp to [lo, hi] (outlier clamping, optional), amax, the scale (power of two, or
    NVFP4's e4m3 block scale × tensor scale read from nv_ptr = [enc/6, g/2688]), nearest E2M1
    with MS-AMP's ties; writes the dequantized values, e4m3 bytes or packed codes, the row's
    multiplier to scale_ptr (2^−e, or NVFP4's e4m3 block scale), and x − clamp(x) (optional).
    A row holding NaN/±inf gets a NaN multiplier (and NaN values).

    Bytes per element: read 2 (bf16) + write 2 (dequantized bf16) | 1 (e4m3) | 0.5 (packed),
    + 2 for the residual; rows longer than BLOCK_N are read twice. ~20 integer/compare ops an
    element, no FLOP-bound part.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    rows = tl.where(row_ok, rows, 0)  # masked rows read row 0's bounds, store nothing
    cols0 = tl.arange(0, BLOCK_N)
    amax = tl.zeros((BLOCK_M,), dtype=tl.float32)
    n_bad = tl.zeros((BLOCK_M,), dtype=tl.int32)
    if SINGLE_PASS:
        mask = row_ok[:, None] & (cols0 < row_len)[None, :]
        x, xc = _load_clamped(x_ptr, lo_ptr, hi_ptr, rows, cols0, mask, row_len, CLAMP)
        finite = tl.abs(x) < float("inf")
        amax = tl.max(tl.where(finite, tl.abs(xc), 0.0), axis=1)
        n_bad = tl.sum((mask & ~finite).to(tl.int32), axis=1)
    else:
        for c0 in range(0, row_len, BLOCK_N):
            cols = c0 + cols0
            mask = row_ok[:, None] & (cols < row_len)[None, :]
            x, xc = _load_clamped(x_ptr, lo_ptr, hi_ptr, rows, cols, mask, row_len, CLAMP)
            finite = tl.abs(x) < float("inf")
            amax = tl.maximum(amax, tl.max(tl.where(finite, tl.abs(xc), 0.0), axis=1))
            n_bad += tl.sum((mask & ~finite).to(tl.int32), axis=1)
    bad = n_bad > 0
    if SCALE_MODE == 1:
        enc6 = tl.load(nv_ptr)
        dec_t = tl.load(nv_ptr + 1)
        block_scale = _e4m3_round(amax * enc6)
        inv_mult = block_scale * dec_t
        mult = inv_mult  # unused: the NVFP4 path divides by inv_mult
        stored = block_scale
    else:
        e = _pow2_exponent(amax)
        mult = _exp2_int(e)
        inv_mult = _exp2_int(-e)
        stored = inv_mult
    tl.store(scale_ptr + rows, tl.where(bad, float("nan"), stored), mask=row_ok)
    if SINGLE_PASS:
        _quantize_store(
            x, xc, rows, row_ok, 0, mult, inv_mult, bad, out_ptr, res_ptr, row_len,
            OUT_MODE, SCALE_MODE, WRITE_RES, BLOCK_N,
        )  # fmt: skip
    else:
        for c0 in range(0, row_len, BLOCK_N):
            cols = c0 + cols0
            mask = row_ok[:, None] & (cols < row_len)[None, :]
            x, xc = _load_clamped(x_ptr, lo_ptr, hi_ptr, rows, cols, mask, row_len, CLAMP)
            _quantize_store(
                x, xc, rows, row_ok, c0, mult, inv_mult, bad, out_ptr, res_ptr, row_len,
                OUT_MODE, SCALE_MODE, WRITE_RES, BLOCK_N,
            )  # fmt: skip


@triton.jit
def _dge_value(x, inv_k, power, clamp):
    """f′(x) of the DGE: min(|2u/δ − 1|^(1/k−1)/k, clamp) with u = x − the interval's left edge,
    δ its width (0.5 on [−2, 2), 1 on [−4, −2) and [2, 4), 2 beyond; x < −4 uses [−6, −4)); x > 6
    or NaN → 0. The left edge is floor(x/δ)·δ (exact: δ is a power of two), at least −6, the
    same edge as the released kernel's 13-step ladder (`_dge_value_ladder`) in ~8 ops. x = 6
    gets edge 6 instead of 4: t = 1 either way. The power runs as exp2(p·log2(t))."""
    wide = (x < -4.0) | (x >= 4.0)
    unit = (x < -2.0) | (x >= 2.0)
    two_over_width = tl.where(wide, 1.0, tl.where(unit, 2.0, 4.0))
    width = tl.where(wide, 2.0, tl.where(unit, 1.0, 0.5))
    left = tl.maximum(tl.floor(x * (0.5 * two_over_width)) * width, -6.0)
    t = tl.abs((x - left) * two_over_width - 1.0)
    t_pos = tl.where(t > 0.0, t, 1.0)  # t = 0 (an interval's middle): the power is +inf
    dy = tl.where(t > 0.0, tl.minimum(tl.exp2(power * tl.log2(t_pos)) * inv_k, clamp), clamp)
    return tl.where(x <= 6.0, dy, 0.0)  # NaN compares false: 0


@triton.jit
def _dge_value_ladder(x, inv_k, power, clamp):
    """The released kernel's interval ladder of f′ (13 compares), kept as the oracle of
    `_dge_value`'s test: min(|2u/δ − 1|^(1/k−1)/k, clamp)
    with u = x − left edge; x > 6 or NaN → 0. The power runs as exp2(p·log2(t))."""
    left = tl.where(x < 4.0, 3.0, 4.0)
    left = tl.where(x < 3.0, 2.0, left)
    left = tl.where(x < 2.0, 1.5, left)
    left = tl.where(x < 1.5, 1.0, left)
    left = tl.where(x < 1.0, 0.5, left)
    left = tl.where(x < 0.5, 0.0, left)
    left = tl.where(x < 0.0, -0.5, left)
    left = tl.where(x < -0.5, -1.0, left)
    left = tl.where(x < -1.0, -1.5, left)
    left = tl.where(x < -1.5, -2.0, left)
    left = tl.where(x < -2.0, -3.0, left)
    left = tl.where(x < -3.0, -4.0, left)
    left = tl.where(x < -4.0, -6.0, left)
    two_over_width = tl.where((x < -2.0) | (x >= 2.0), 2.0, 4.0)  # δ = 1 or 0.5
    two_over_width = tl.where((x < -4.0) | (x >= 4.0), 1.0, two_over_width)  # δ = 2
    t = tl.abs((x - left) * two_over_width - 1.0)
    t_pos = tl.where(t > 0.0, t, 1.0)  # t = 0 (an interval's middle): the power is +inf
    dy = tl.where(t > 0.0, tl.minimum(tl.exp2(power * tl.log2(t_pos)) * inv_k, clamp), clamp)
    return tl.where(x <= 6.0, dy, 0.0)  # NaN compares false: 0


@triton.jit
def _dge_kernel(x_ptr, out_ptr, n, inv_k, power, clamp, BLOCK: tl.constexpr):
    """out = f′(x) elementwise. Reads 2 B (bf16) and writes 2 B an element; ~40 FLOPs."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dy = _dge_value(x, inv_k, power, clamp)
    tl.store(out_ptr + offs, _to_out(dy, out_ptr), mask=mask)


def dge_grad_configs() -> list[triton.Config]:
    """Tiles of the fused dW GEMM (three: every dtype/flag variant compiles each); one config
    under the interpreter. 128×128 at 8 warps is the tile Triton's sm_90 wgmma path runs best;
    ptxas (sm_90a, triton 3.6, inputs 16-aligned as the JIT specializes them): 244 registers, no
    stack, where the ladder epilogue needed 255 and a 176 B stack frame. GROUP_N output-row tiles
    share X's column band in L2 before the order moves on. Every BLOCK_M divides 64 (the
    launcher's EVEN_M test)."""
    if interpreting():
        return [
            triton.Config({"BLOCK_N": 32, "BLOCK_K": 32, "BLOCK_M": 16, "GROUP_N": 2}, num_warps=1)
        ]
    return [
        triton.Config(
            {"BLOCK_N": bn, "BLOCK_K": bk, "BLOCK_M": bm, "GROUP_N": 8},
            num_warps=w,
            num_stages=st,
        )
        for bn, bk, bm, w, st in (
            (128, 128, 64, 8, 3),
            (128, 64, 64, 8, 3),
            (64, 64, 64, 4, 4),
        )
    ]


@triton.autotune(configs=dge_grad_configs(), key=["N", "K", "M", "EVEN_M"])
@triton.jit
def _dge_weight_grad_kernel(
    dy_ptr,
    x_ptr,
    w_ptr,
    sf_ptr,
    out_ptr,
    M,
    N,
    K,
    inv_k,
    power,
    clamp,
    SF_PER_COL: tl.constexpr,
    USE_DGE: tl.constexpr,
    DOT_F32: tl.constexpr,
    EVEN_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    GROUP_N: tl.constexpr,
):
    """dW[n, k] = Σ_m dY[m, n] X[m, k], times f′(W[n, k]·sf) in the epilogue (USE_DGE).

    dY (M, N), X (M, K), W (N, K) contiguous; sf the weight's quantization scale per column k
    (SF_PER_COL, the paper's channel-wise weights) or per row n. 2·M·N·K FLOPs; the epilogue
    reads W (2 B) and writes dW (4 B) once an element instead of a second pass of 10 B.
    One program an output tile in grouped order (GROUP_N tiles down a column band of X before
    the next band); operand pointers advance by BLOCK_M rows a step (no per-step 64-bit index
    tensors) and the reduction-axis mask is dropped when M is a multiple of BLOCK_M (EVEN_M).
    """
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    tiles_k = tl.cdiv(K, BLOCK_K)
    per_group = GROUP_N * tiles_k
    first_n = (pid // per_group) * GROUP_N
    group_rows = tl.minimum(tiles_n - first_n, GROUP_N)
    pid_n = first_n + (pid % per_group) % group_rows
    pid_k = (pid % per_group) // group_rows
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rm = tl.arange(0, BLOCK_M)
    n_ok = rn < N
    k_ok = rk < K
    a_ptrs = dy_ptr + rm.to(tl.int64)[None, :] * N + rn[:, None]
    b_ptrs = x_ptr + rm.to(tl.int64)[:, None] * K + rk[None, :]
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        if EVEN_M:
            a = tl.load(a_ptrs, mask=n_ok[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[None, :], other=0.0)
        else:
            m_ok = (m0 + rm) < M
            a = tl.load(a_ptrs, mask=m_ok[None, :] & n_ok[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        if DOT_F32:
            acc += tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(a, b)
        a_ptrs += BLOCK_M * N  # a 32-bit step; the pointers themselves are 64-bit
        b_ptrs += BLOCK_M * K
    mask = n_ok[:, None] & k_ok[None, :]
    offs = rn.to(tl.int64)[:, None] * K + rk[None, :]
    if USE_DGE:
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if SF_PER_COL:
            sf = tl.load(sf_ptr + rk, mask=k_ok, other=1.0)[None, :]
        else:
            sf = tl.load(sf_ptr + rn, mask=n_ok, other=1.0)[:, None]
        acc = acc * _dge_value(w * sf, inv_k, power, clamp)
    tl.store(out_ptr + offs, _to_out(acc, out_ptr), mask=mask)
