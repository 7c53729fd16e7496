"""Triton kernels of POET-X: skew packing, the Cayley–Neumann polynomial, and the permuted
block-diagonal rotation of activations (forward, transpose, per-block gradient), and the column
permutation.

The block size b is a run-time argument (one compiled kernel serves every b: Triton
specialises it only by divisibility by 16). All rotations work on rows of a 2-D activation
matrix X [M, D] whose D columns form nb contiguous blocks of b. The permutations are separate
row-owning passes (coalesced row reads and writes, the shuffle in shared memory), run in place
where they can: a gather of random 2-byte columns folded into a tile load costs one memory
transaction per element (10–50× the coalesced traffic, measured on the H200).

Under Triton's CPU interpreter every tile is upcast to fp32 right after its load (``UPCAST``):
``tl.dot`` on bf16 is wrong there. On the GPU bf16 tiles go to the tensor cores as they are
and fp32 tiles use ``input_precision="ieee"`` (fp32 exactness), unless the launcher asks for tf32.
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels.runtime.device import interpreting


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --------------------------------------------------------------------------- skew packing


@triton.jit
def _skew_from_vec_kernel(theta_ptr, q_ptr, n_free, B, BT: tl.constexpr):
    """Q[z, i, j] = θ[z, idx(i, j)] above the diagonal, −θ[z, idx(j, i)] below, 0 on it, with
    idx(i, j) = i·b − i(i+1)/2 + (j − i − 1) (row-major upper triangle).

    Reads b(b−1)/2 and writes b² values per block: memory-bound, no FLOPs.
    """
    z = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BT + tl.arange(0, BT)
    j = tl.program_id(2) * BT + tl.arange(0, BT)
    ii = i[:, None]
    jj = j[None, :]
    lo = tl.minimum(ii, jj)
    hi = tl.maximum(ii, jj)
    idx = lo * B - (lo * (lo + 1)) // 2 + (hi - lo - 1)
    inside = (ii < B) & (jj < B)
    off_diag = inside & (ii != jj)
    val = tl.load(theta_ptr + z * n_free + idx, mask=off_diag, other=0.0).to(tl.float32)
    val = tl.where(ii > jj, -val, val)
    tl.store(q_ptr + z * B * B + ii * B + jj, val.to(q_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _vec_from_skew_kernel(
    q_ptr,
    out_ptr,
    rows_ptr,
    cols_ptr,
    n_free,
    B,
    ANTI: tl.constexpr,
    BT: tl.constexpr,
):
    """out[z, k] = Q[z, i_k, j_k] − ANTI·Q[z, j_k, i_k] for the k-th upper-triangle entry.

    ANTI = 0 packs a skew matrix (the inverse of the kernel above); ANTI = 1 turns dL/dQ into
    the gradient of the packed parameters. Reads 1–2 and writes 1 value per free parameter.
    """
    z = tl.program_id(0).to(tl.int64)
    k = tl.program_id(1) * BT + tl.arange(0, BT)
    mask = k < n_free
    i = tl.load(rows_ptr + k, mask=mask, other=0)
    j = tl.load(cols_ptr + k, mask=mask, other=0)
    base = q_ptr + z * B * B
    val = tl.load(base + i * B + j, mask=mask, other=0.0).to(tl.float32)
    if ANTI:
        val -= tl.load(base + j * B + i, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + z * n_free + k, val.to(out_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- Cayley–Neumann


@triton.jit
def _cnp_mm_kernel(
    a_ptr,
    b_ptr,
    b2_ptr,
    c_ptr,
    d_ptr,
    e1_ptr,
    e2_ptr,
    e3_ptr,
    out_ptr,
    s_b2,
    s_ab,
    s_cd,
    s_e1,
    s_e2,
    s_e3,
    s_eye,
    B,
    HAS_B2: tl.constexpr,
    HAS_CD: tl.constexpr,
    N_E: tl.constexpr,
    PREC: tl.constexpr,
    LOWP: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
):
    """One tile of out = s_ab·A·(B + s_b2·B2) + s_cd·C·D + s_e1·E1 + s_e2·E2 + s_e3·E3 + s_eye·I
    on a batch of b×b fp32 matrices (contiguous [nb, b, b]).

    LOWP rounds the operands to bf16 (GPU only; the layer asks for it when its activations are
    16-bit, so R is rounded to 16 bits anyway); the terms added in the epilogue stay fp32.
    Every step of the Cayley–Neumann forward and backward is one launch of this kernel, with the
    polynomial's sums fused into the operand load and the epilogue: the forward is Q² = Q·Q,
    then R = Q²·(2Q + c·Q²) + 2Q + 2Q² + I (Q³ and Q⁴ in one pass, Q and Q² loaded once per tile).
    FLOPs: 2b³ per product per block; compute-bound, negligible beside the layer's GEMM.
    """
    z = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BT + tl.arange(0, BT)
    cols = tl.program_id(2) * BT + tl.arange(0, BT)
    rmask = rows < B
    cmask = cols < B
    base = z * B * B
    acc = tl.zeros((BT, BT), dtype=tl.float32)
    acc2 = tl.zeros((BT, BT), dtype=tl.float32)
    for k0 in range(0, B, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < B
        a_off = base + rows[:, None] * B + ks[None, :]
        b_off = base + ks[:, None] * B + cols[None, :]
        amask = rmask[:, None] & kmask[None, :]
        bmask = kmask[:, None] & cmask[None, :]
        a = tl.load(a_ptr + a_off, mask=amask, other=0.0)
        b = tl.load(b_ptr + b_off, mask=bmask, other=0.0)
        if HAS_B2:
            b += s_b2 * tl.load(b2_ptr + b_off, mask=bmask, other=0.0)
        if LOWP:  # GPU only: bf16 operands on the tensor cores, fp32 accumulation
            a = a.to(tl.bfloat16)
            b = b.to(tl.bfloat16)
        acc = tl.dot(a, b, acc, input_precision=PREC)
        if HAS_CD:
            c = tl.load(c_ptr + a_off, mask=amask, other=0.0)
            d = tl.load(d_ptr + b_off, mask=bmask, other=0.0)
            if LOWP:
                c = c.to(tl.bfloat16)
                d = d.to(tl.bfloat16)
            acc2 = tl.dot(c, d, acc2, input_precision=PREC)
    out = s_ab * acc
    if HAS_CD:
        out += s_cd * acc2
    o_off = base + rows[:, None] * B + cols[None, :]
    omask = rmask[:, None] & cmask[None, :]
    if N_E >= 1:
        out += s_e1 * tl.load(e1_ptr + o_off, mask=omask, other=0.0)
    if N_E >= 2:
        out += s_e2 * tl.load(e2_ptr + o_off, mask=omask, other=0.0)
    if N_E >= 3:
        out += s_e3 * tl.load(e3_ptr + o_off, mask=omask, other=0.0)
    out += tl.where(rows[:, None] == cols[None, :], s_eye, 0.0)
    tl.store(out_ptr + o_off, out, mask=omask)


def cnp_tiles(block: int) -> tuple[int, int]:
    """(BT, BK) of the Cayley–Neumann kernel for blocks of `block` (tl.dot needs ≥ 16)."""
    bt = min(64, max(16, next_pow2(block)))
    return bt, min(32, bt) if not interpreting() else bt


def cnp_meta(block: int, lowp: bool, wide: bool = True) -> dict[str, int]:
    """Launch constants of the Cayley–Neumann kernel. The bf16-operand (GPU) mode at b ≥ 128
    takes 128×128 output tiles: the fp32 operands are re-read b/BT times from L2 (4× at 64,
    ≈ 64–128 MB a launch for 32 blocks of 256, which made it L2-bound at ≈ 18 µs a launch), 2×
    at 128; two stages keep A, B, C, D (16 KB each a stage) well inside shared memory. The fp32
    (ieee, FMA) mode keeps the 64 tile: a 128×128 FMA accumulator pair would spill."""
    bt, bk = cnp_tiles(block)
    if wide and lowp and block >= 128 and not interpreting():
        return {"BT": 128, "BK": 32, "num_warps": 8, "num_stages": 2}
    return {"BT": bt, "BK": bk}


# --------------------------------------------------------------------------- column permutation


def permute_meta(d: int) -> dict[str, int]:
    """Launch constants of the permutation kernel for rows of `d` columns: the whole row in one
    tile (a permutation may send any column anywhere), ≈ 16–32 elements a thread."""
    dp = max(16, next_pow2(d))
    return {"DP": dp, "ROWS": 4, "num_warps": max(4, min(16, dp // 512))}


@triton.jit
def _permute_cols_kernel(
    x_ptr,
    out_ptr,
    idx_ptr,
    M,
    D,
    stride_xm,
    stride_om,
    ROWS: tl.constexpr,
    DP: tl.constexpr,
):
    """out[m, c] = X[m, idx[c]] for ROWS rows a program; `out` may be X itself (in place).

    Why not a gather folded into the rotation's load: a random column of 2-byte elements makes
    every lane of a load its own 32-byte sector, so the L1/L2 serve one element per
    transaction (measured on the H200: ≈ 0.1–0.35 TB/s). Here a program owns whole rows: each
    row is read and written with contiguous vector accesses, and the permutation happens in
    shared memory (``tl.gather``); the index table is read once per ROWS rows.
    Bytes: 2·M·D·elem + 4·D·M/ROWS; no FLOPs. In place is safe: a row is read whole before
    any of it is written, and only this program touches it.
    """
    pid = tl.program_id(0)
    cols = tl.arange(0, DP)
    cmask = cols < D
    idx = tl.load(idx_ptr + cols, mask=cmask, other=0)
    for r in range(ROWS):
        m = (pid * ROWS + r).to(tl.int64)
        mask = cmask & ((m + tl.zeros([DP], dtype=tl.int64)) < M)
        row = tl.load(x_ptr + m * stride_xm + cols, mask=mask, other=0.0)
        tl.store(out_ptr + m * stride_om + cols, tl.gather(row, idx, 0), mask=mask)


# --------------------------------------------------------------------------- block rotation

# the widest output tile of one rotation program: a block no wider than this is written by
# one program that read all of its inputs first, so the rotation may run in place
ROTATE_MAX_BN = 256


def rotate_bn(block: int) -> int:
    """Output columns of one rotation program: the whole block when it fits (X read once)."""
    return min(ROTATE_MAX_BN, max(16, next_pow2(block)))


def rotate_configs() -> list[triton.Config]:
    """Tiles of the rotation kernel for 16-bit activations (tuned); one under the interpreter.
    BN is the launcher's (the whole block), so only the row tile, the K step and the pipeline
    are tuned."""
    if interpreting():
        return [triton.Config({"BM": 32, "BK": 32}, num_warps=4)]
    return [
        triton.Config({"BM": bm, "BK": bk}, num_warps=w, num_stages=s)
        for bm, bk, w, s in (
            (64, 64, 4, 3),
            (64, 64, 8, 3),
            (128, 64, 8, 3),
            (128, 32, 8, 4),
        )
    ]


# fp32 activations are the exactness path (ieee products), not the speed path: one fixed tile
ROTATE_FP32_META = (
    {"BM": 32, "BK": 32, "num_warps": 4} if interpreting() else {"BM": 32, "BK": 16, "num_warps": 8}
)


@triton.jit
def _block_rotate_kernel(
    x_ptr,
    blk_ptr,
    out_ptr,
    M,
    NB,
    stride_xm,
    stride_om,
    s_bz,
    s_bj,
    s_bn,
    B,
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """out[m, k·b + n] = Σ_j X[m, k·b + j]·Blk[k, j, n] on contiguous column blocks (the
    permutations are separate coalesced passes, see _permute_cols_kernel). Blk is read through
    its strides, so the transposed blocks of the backward cost nothing.

    With BN ≥ b one program reads its rows of block k whole before writing them, so `out` may
    be X (in place). Bytes: X read b/BN times (once at b ≤ 256), out written once: 2·M·D·elem;
    FLOPs 2·M·D·b. For b = 256 in bf16 that is 128 FLOP/B, below the H200's ridge
    (≈ 160 FLOP/B): memory-bound, ≈ 8–11 µs for 2048×4096 at 3–4 TB/s.
    """
    pid_m = tl.program_id(0)
    pid_kn = tl.program_id(1)
    n_tiles = tl.cdiv(B, BN)
    k = pid_kn // n_tiles
    ns = (pid_kn % n_tiles) * BN + tl.arange(0, BN)
    nmask = ns < B
    rows = (pid_m * BM + tl.arange(0, BM)).to(tl.int64)
    rmask = rows < M
    col0 = k * B
    blk = blk_ptr + k.to(tl.int64) * s_bz
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for j0 in range(0, B, BK):
        js = j0 + tl.arange(0, BK)
        jmask = js < B
        a = tl.load(
            x_ptr + rows[:, None] * stride_xm + (col0 + js)[None, :],
            mask=rmask[:, None] & jmask[None, :],
            other=0.0,
        )
        w = tl.load(
            blk + js[:, None] * s_bj + ns[None, :] * s_bn,
            mask=jmask[:, None] & nmask[None, :],
            other=0.0,
        )
        if UPCAST:
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=PREC)
    tl.store(
        out_ptr + rows[:, None] * stride_om + (col0 + ns)[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=rmask[:, None] & nmask[None, :],
    )


def rotate_grad_configs() -> list[triton.Config]:
    """Tiles of the per-block gradient kernel for 16-bit inputs (tuned); one under the
    interpreter."""
    if interpreting():
        return [triton.Config({"BJ": 32, "BN": 32, "BM": 32}, num_warps=4)]
    return [
        triton.Config({"BJ": bj, "BN": bn, "BM": bm}, num_warps=w, num_stages=s)
        for bj, bn, bm, w, s in (
            (64, 64, 64, 4, 3),
            (128, 128, 64, 8, 3),
            (64, 128, 64, 4, 3),
        )
    ]


ROTATE_GRAD_FP32_META = (
    {"BJ": 32, "BN": 32, "BM": 32, "num_warps": 4}
    if interpreting()
    else {"BJ": 64, "BN": 64, "BM": 32, "num_warps": 4}
)


@triton.jit
def _block_rotate_grad_kernel(
    x_ptr,
    dy_ptr,
    out_ptr,
    M,
    NB,
    rows_per_split,
    stride_xm,
    stride_dm,
    B,
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
    SPLIT: tl.constexpr,
    BJ: tl.constexpr,
    BN: tl.constexpr,
    BM: tl.constexpr,
):
    """partial[s, k, j, n] = Σ_{m in slice s} X[m, k·b + j]·dY[m, k·b + n] in fp32: the
    gradient of the k-th block of a rotation on contiguous column blocks (the launcher permutes
    gathered operands first; slices summed in a fixed order by the host: no atomics,
    deterministic).

    Bytes: X and dY read b/BN and b/BJ times; FLOPs 2·M·D·b, as the rotation itself.
    """
    k = tl.program_id(0)
    pid_jn = tl.program_id(1)
    split = tl.program_id(2)
    n_tiles = tl.cdiv(B, BN)
    js = (pid_jn // n_tiles) * BJ + tl.arange(0, BJ)
    ns = (pid_jn % n_tiles) * BN + tl.arange(0, BN)
    jmask = js < B
    nmask = ns < B
    col0 = k * B
    xc = col0 + js
    dc = col0 + ns
    start = split * rows_per_split
    stop = tl.minimum(start + rows_per_split, M)
    acc = tl.zeros((BJ, BN), dtype=tl.float32)
    for m0 in range(start, stop, BM):
        ms = (m0 + tl.arange(0, BM)).to(tl.int64)
        mmask = ms < stop
        xt = tl.load(
            x_ptr + ms[None, :] * stride_xm + xc[:, None],
            mask=jmask[:, None] & mmask[None, :],
            other=0.0,
        )
        d = tl.load(
            dy_ptr + ms[:, None] * stride_dm + dc[None, :],
            mask=mmask[:, None] & nmask[None, :],
            other=0.0,
        )
        if UPCAST:
            xt = xt.to(tl.float32)
            d = d.to(tl.float32)
        acc = tl.dot(xt, d, acc, input_precision=PREC)
    out = out_ptr + ((split * NB + k).to(tl.int64) * B) * B
    tl.store(out + js[:, None] * B + ns[None, :], acc, mask=jmask[:, None] & nmask[None, :])


# restore_value: the rotation may run in place (out is X), and tuning runs it several times
block_rotate_tuned = triton.autotune(
    configs=rotate_configs(), key=["M", "NB", "B", "BN", "PREC"], restore_value=["out_ptr"]
)(_block_rotate_kernel)
block_rotate_grad_tuned = triton.autotune(
    configs=rotate_grad_configs(), key=["M", "NB", "B", "PREC", "SPLIT"]
)(_block_rotate_grad_kernel)
