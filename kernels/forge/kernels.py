"""FORGE's Triton kernels: a weight-gradient GEMM whose epilogue is the optimizer step.

`_forge_linear_step_kernel` computes one [BLOCK_N, BLOCK_K] tile of dW = dYᵀ·X (the reduction
runs over tokens), keeps it in registers, and applies the update rule to the matching tiles of
W and its fp32 states, which it loads, updates and stores. dW is never written to memory.

`_round_to_bf16_kernel` runs the epilogue's fp32 -> bf16 rounding alone, so it can be tested
bit-exactly against `reference.round_to_bf16`.

Stochastic rounding is pure `tl` integer arithmetic (a hash for the random bits, an add and a
truncation). PTX's `cvt.rs.bf16x2.f32` would do it in one instruction, but it exists only on
sm_100a/sm_103a (Blackwell), not on the H100 (sm_90) this project measures on, so there is no
inline-PTX twin: the same code runs on every GPU and in the CPU interpreter.
"""

from __future__ import annotations

import functools

import triton
import triton.language as tl

from kernels.runtime.device import interpreting

from .rules import Rule

INTERPRET = interpreting()  # read once: triton fixed its mode at import

# The device scalar buffer of a capturable step (`rules.DeviceScalars`): fp32 slots in the order
# of `StepScalars.kernel_args()`, then the step count as int32 bits.
N_SCALAR_SLOTS = 16
STEP_SLOT: tl.constexpr = tl.constexpr(10)

ADAMW: tl.constexpr = tl.constexpr(int(Rule.ADAMW))
LION: tl.constexpr = tl.constexpr(int(Rule.LION))
SGD_MOMENTUM: tl.constexpr = tl.constexpr(int(Rule.SGD_MOMENTUM))


def make_config(
    bn: int,
    bk: int,
    bt: int,
    warps: int,
    stages: int,
    prefetch: bool = False,
    split: int = 1,
    group: int = 8,
) -> triton.Config:
    """One tile shape: [bn, bk] output tile, bt tokens a step, epilogue prefetched or split.

    `group` row-tiles share a column of X in L2 before the launch order moves on; group=1 walks
    the tiles row by row, so CTAs running together touch one contiguous band of W, m and v.
    """
    return triton.Config(
        {
            "BLOCK_N": bn,
            "BLOCK_K": bk,
            "BLOCK_T": bt,
            "GROUP_N": group,
            "PREFETCH": prefetch,
            "EPI_SPLIT": split,
        },
        num_warps=warps,
        num_stages=stages,
    )


# (BLOCK_N, BLOCK_K, BLOCK_T, warps, stages, prefetch, split, group), bf16 GEMM operands.
# Checked with ptxas for sm_90: none spills.
TUNED_SHAPES: list[tuple[int, int, int, int, int, bool, int, int]] = [
    (128, 128, 64, 8, 3, False, 2, 8),
    (128, 64, 64, 4, 4, False, 2, 8),
    (128, 128, 64, 8, 3, False, 2, 1),
    (64, 256, 64, 8, 3, False, 2, 1),
    (64, 128, 64, 4, 4, False, 2, 1),
    (64, 64, 64, 4, 3, False, 1, 1),
    (64, 64, 64, 4, 3, False, 1, 8),
    (128, 64, 64, 8, 3, True, 1, 8),
]


def autotune_configs() -> list[triton.Config]:
    """Tile shapes for the fused kernel; a single small one under the CPU interpreter.

    Register budget decides: the fp32 accumulator plus three fp32 epilogue tiles (W, m, v) must
    fit in 255 registers a thread, or the epilogue spills. PREFETCH loads the epilogue tiles
    before the reduction loop, so their memory traffic overlaps the tensor-core work (only the
    smaller tiles have the registers); EPI_SPLIT=2 or 4 updates the tile in column slices.
    """
    if INTERPRET:
        return [make_config(32, 32, 32, 4, 1)]
    return [make_config(*c) for c in TUNED_SHAPES]


@functools.cache
def default_config() -> triton.Config:
    """The config used without autotuning (tests at odd shapes, small layers)."""
    if INTERPRET:
        return autotune_configs()[0]
    return make_config(128, 64, 64, 4, 4, False, 2, 8)


@functools.cache
def ieee_config() -> triton.Config:
    """Full-fp32 products (no TF32) run on the FMA units, not tensor cores: a smaller tile."""
    if INTERPRET:
        return autotune_configs()[0]
    return make_config(64, 64, 32, 4, 2)


@triton.jit
def _mix32(x):
    """lowbias32 integer hash on uint32 (wrapping multiplies); `reference.mix32` is its twin."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    x = x ^ (x >> 16)
    return x


@triton.jit
def _bf16_bits_to_fp32(b16):
    """bf16 bit patterns (int16) -> fp32: the 16 bits become the top half of the word."""
    u = b16.to(tl.uint16, bitcast=True).to(tl.uint32)
    return (u << 16).to(tl.float32, bitcast=True)


@triton.jit
def _fp32_to_bf16_bits(x, offsets, seed_key, STOCHASTIC: tl.constexpr):
    """fp32 -> bf16 bit patterns (int16): nearest-even, or stochastic with hashed bits.

    Integer arithmetic only, so the interpreter (whose float -> bf16 cast truncates) and the GPU
    agree bit for bit. `offsets` (int32) index the element; `seed_key` varies per step.
    """
    bits = x.to(tl.uint32, bitcast=True)
    if STOCHASTIC:
        r = _mix32(offsets.to(tl.uint32) ^ seed_key.to(tl.uint32)) & 0xFFFF
        bits = bits + r
    else:
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
    top = bits >> 16
    top = tl.where(x != x, 0x7FC0, top)
    return top.to(tl.uint16).to(tl.int16, bitcast=True)


@triton.jit
def load_step_scalars(scalars_ptr):
    """The step's scalars from a capturable optimizer's device buffer (fp32 slots in the order
    of `StepScalars.kernel_args()`, the step count as int32 bits in slot STEP_SLOT): a CUDA graph
    replay reads this step's values, where run-time arguments would be frozen at capture."""
    lr = tl.load(scalars_ptr + 0)
    decay = tl.load(scalars_ptr + 1)
    weight_decay = tl.load(scalars_ptr + 2)
    beta1 = tl.load(scalars_ptr + 3)
    beta2 = tl.load(scalars_ptr + 4)
    eps = tl.load(scalars_ptr + 5)
    step_size = tl.load(scalars_ptr + 6)
    bc2_sqrt = tl.load(scalars_ptr + 7)
    dampening = tl.load(scalars_ptr + 8)
    first_step = tl.load(scalars_ptr + 9)
    step = tl.load(scalars_ptr + STEP_SLOT).to(tl.int32, bitcast=True)
    return (
        lr,
        decay,
        weight_decay,
        beta1,
        beta2,
        eps,
        step_size,
        bc2_sqrt,
        dampening,
        first_step,
        step,
    )


@triton.jit
def device_seed_key(param_key, step):
    """The stochastic-rounding key of (parameter, step) from the parameter's key (int32 bits of
    `reference.sr_param_key`) and the device step: `reference.sr_seed_key`'s last mix."""
    k = _mix32(param_key.to(tl.uint32, bitcast=True) ^ step.to(tl.uint32, bitcast=True))
    return (k & 0x7FFFFFFF).to(tl.int32, bitcast=True)


@triton.jit
def _round_to_bf16_kernel(
    x_ptr, out_ptr, n, seed_key, STOCHASTIC: tl.constexpr, BLOCK: tl.constexpr
):
    """out[i] = bf16 bits of x[i], rounded as the fused epilogue rounds (reads 4 B, writes 2 B)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, _fp32_to_bf16_bits(x, offs, seed_key, STOCHASTIC), mask=mask)


@triton.jit
def _apply_rule(
    w,
    g,
    s1,
    s2,
    lr,
    decay,
    weight_decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    dampening,
    first_step,
    RULE: tl.constexpr,
    NESTEROV: tl.constexpr,
):
    """The element-wise rule on fp32 tiles; returns the new (w, s1, s2)."""
    if RULE == ADAMW:
        w = w * decay
        s1 = s1 + (1.0 - beta1) * (g - s1)
        s2 = s2 * beta2 + (1.0 - beta2) * (g * g)
        denom = tl.sqrt(s2) / bc2_sqrt + eps
        w = w - step_size * (s1 / denom)
    elif RULE == LION:
        c = s1 * beta1 + g * (1.0 - beta1)
        sign = tl.where(c > 0.0, 1.0, tl.where(c < 0.0, -1.0, 0.0))
        w = w * decay - lr * sign
        s1 = s1 * beta2 + g * (1.0 - beta2)
    else:  # SGD with momentum
        d = g + weight_decay * w
        s1 = tl.where(first_step != 0, d, s1 * beta1 + (1.0 - dampening) * d)
        if NESTEROV:  # noqa: SIM108 (constexpr branch)
            d = d + beta1 * s1
        else:
            d = s1
        w = w - lr * d
    return w, s1, s2


@triton.jit
def _load_tile(w_ptr, s1_ptr, s2_ptr, offs, mask, RULE: tl.constexpr, W_BF16: tl.constexpr):
    """Load a tile of W (as fp32) and its states; s2 aliases s1 for one-state rules."""
    # W and its states stream through once: evict them first, keep dY and X in L2.
    if W_BF16:
        w = _bf16_bits_to_fp32(
            tl.load(w_ptr + offs, mask=mask, other=0, eviction_policy="evict_first")
        )
    else:
        w = tl.load(w_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first")
    s1 = tl.load(s1_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first")
    if RULE == ADAMW:
        s2 = tl.load(s2_ptr + offs, mask=mask, other=0.0, eviction_policy="evict_first")
    else:
        s2 = s1
    return w, s1, s2


@triton.jit
def _store_tile(
    w_ptr,
    s1_ptr,
    s2_ptr,
    offs,
    mask,
    w,
    s1,
    s2,
    seed_key,
    RULE: tl.constexpr,
    W_BF16: tl.constexpr,
    STOCHASTIC: tl.constexpr,
):
    """Store an updated tile: W rounded to bf16 bits when W_BF16, states in fp32."""
    if W_BF16:
        bits = _fp32_to_bf16_bits(w, offs, seed_key, STOCHASTIC)
        tl.store(w_ptr + offs, bits, mask=mask, eviction_policy="evict_first")
    else:
        tl.store(w_ptr + offs, w, mask=mask, eviction_policy="evict_first")
    tl.store(s1_ptr + offs, s1, mask=mask, eviction_policy="evict_first")
    if RULE == ADAMW:
        tl.store(s2_ptr + offs, s2, mask=mask, eviction_policy="evict_first")


@triton.jit
def _column_halves(t, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Split a [ROWS, COLS] tile into its left and right [ROWS, COLS // 2] halves."""
    return tl.split(tl.permute(tl.reshape(t, (ROWS, 2, COLS // 2)), (0, 2, 1)))


@triton.jit
def _epilogue(
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    offs,
    mask,
    w,
    s1,
    s2,
    g,
    lr,
    decay,
    weight_decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    dampening,
    first_step,
    seed_key,
    RULE: tl.constexpr,
    NESTEROV: tl.constexpr,
    W_BF16: tl.constexpr,
    STOCHASTIC: tl.constexpr,
    WRITE_OLD: tl.constexpr,
):
    """The optimizer step on one loaded tile (the only place it is written): the pre-update W
    to `wold_ptr` (bf16, nearest) when WRITE_OLD, the rule, and the stores."""
    if WRITE_OLD:
        tl.store(wold_ptr + offs, _fp32_to_bf16_bits(w, offs, 0, False), mask=mask)
    w, s1, s2 = _apply_rule(
        w,
        g,
        s1,
        s2,
        lr,
        decay,
        weight_decay,
        beta1,
        beta2,
        eps,
        step_size,
        bc2_sqrt,
        dampening,
        first_step,
        RULE,
        NESTEROV,
    )
    _store_tile(w_ptr, s1_ptr, s2_ptr, offs, mask, w, s1, s2, seed_key, RULE, W_BF16, STOCHASTIC)


@triton.jit
def _update_tile(
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    g,
    rn,
    rk,
    N,
    K,
    lr,
    decay,
    weight_decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    dampening,
    first_step,
    seed_key,
    RULE: tl.constexpr,
    NESTEROV: tl.constexpr,
    W_BF16: tl.constexpr,
    STOCHASTIC: tl.constexpr,
    WRITE_OLD: tl.constexpr,
):
    """Load the W/state tile under gradient tile `g` (rows rn, columns rk) and step it."""
    offs = rn[:, None] * K + rk[None, :]
    mask = (rn[:, None] < N) & (rk[None, :] < K)
    w, s1, s2 = _load_tile(w_ptr, s1_ptr, s2_ptr, offs, mask, RULE, W_BF16)
    _epilogue(
        w_ptr,
        s1_ptr,
        s2_ptr,
        wold_ptr,
        offs,
        mask,
        w,
        s1,
        s2,
        g,
        lr,
        decay,
        weight_decay,
        beta1,
        beta2,
        eps,
        step_size,
        bc2_sqrt,
        dampening,
        first_step,
        seed_key,
        RULE,
        NESTEROV,
        W_BF16,
        STOCHASTIC,
        WRITE_OLD,
    )


@triton.jit
def _update_halves(
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    g,
    rn,
    k0,
    N,
    K,
    lr,
    decay,
    weight_decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    dampening,
    first_step,
    seed_key,
    RULE: tl.constexpr,
    NESTEROV: tl.constexpr,
    W_BF16: tl.constexpr,
    STOCHASTIC: tl.constexpr,
    WRITE_OLD: tl.constexpr,
    ROWS: tl.constexpr,
    COLS: tl.constexpr,
):
    """Step the [ROWS, COLS] gradient tile `g` (columns k0 ..) in its two column halves, one
    after the other: half the epilogue's registers live at once."""
    half = tl.arange(0, COLS // 2)
    for i in tl.static_range(2):
        _update_tile(
            w_ptr,
            s1_ptr,
            s2_ptr,
            wold_ptr,
            _column_halves(g, ROWS, COLS)[i],
            rn,
            k0 + i * (COLS // 2) + half,
            N,
            K,
            lr,
            decay,
            weight_decay,
            beta1,
            beta2,
            eps,
            step_size,
            bc2_sqrt,
            dampening,
            first_step,
            seed_key,
            RULE,
            NESTEROV,
            W_BF16,
            STOCHASTIC,
            WRITE_OLD,
        )


@triton.jit
def _dyt_x_tile(
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
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    UPCAST: tl.constexpr,
    DOT_IEEE: tl.constexpr,
):
    """The [BLOCK_N, BLOCK_K] tile (rows `rn`, columns `rk`) of dYᵀ·X, fp32 accumulation over
    T in BLOCK_T steps; dy: [T, N], x: [T, K]. FORGE's fused step and ChunkFT's slice kernel
    both reduce through it (inlined by Triton)."""
    rt = tl.arange(0, BLOCK_T)
    a_ptrs = dy_ptr + rn[:, None] * stride_dy_n + rt[None, :] * stride_dy_t
    b_ptrs = x_ptr + rt[:, None] * stride_x_t + rk[None, :] * stride_x_k
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        t_ok = (t0 + rt) < T
        a = tl.load(a_ptrs, mask=n_ok[:, None] & t_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=t_ok[:, None] & k_ok[None, :], other=0.0)
        if UPCAST:
            # The interpreter's tl.dot is wrong on bf16: upcast (exact) and multiply in fp32.
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if DOT_IEEE:  # noqa: SIM108 (constexpr branch)
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_T * stride_dy_t
        b_ptrs += BLOCK_T * stride_x_t
    return acc


@triton.jit(do_not_specialize=["seed_key", "first_step"])
def _forge_linear_step_kernel(
    dy_ptr,
    x_ptr,
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    scalars_ptr,
    T,
    N,
    K,
    stride_dy_t,
    stride_dy_n,
    stride_x_t,
    stride_x_k,
    lr,
    decay,
    weight_decay,
    beta1,
    beta2,
    eps,
    step_size,
    bc2_sqrt,
    dampening,
    first_step,
    seed_key,
    tune_t,
    tune_nk,
    RULE: tl.constexpr,
    NESTEROV: tl.constexpr,
    W_BF16: tl.constexpr,
    STOCHASTIC: tl.constexpr,
    DOT_IEEE: tl.constexpr,
    UPCAST: tl.constexpr,
    WRITE_OLD: tl.constexpr,
    SCALARS_FROM_PTR: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    GROUP_N: tl.constexpr,
    PREFETCH: tl.constexpr,
    EPI_SPLIT: tl.constexpr,
):
    """W[N, K] (and its states) <- rule(W, dYᵀ·X) one [BLOCK_N, BLOCK_K] tile a program.

    dy: [T, N], x: [T, K] (fp32, or bf16 with fp32 accumulation); W: [N, K] contiguous, fp32 or
    bf16 bit patterns (int16) when W_BF16; states fp32 [N, K] contiguous (s2 unused unless AdamW).

    Per weight element it must move: W read + write (4 + 4 B fp32, 2 + 2 B bf16) and each state
    read + write (8 B per state): 24 B for fp32 AdamW, 20 B for bf16-weight AdamW, 16 B for
    Lion/SGD fp32; plus the GEMM operands, T·(N + K)·(2 or 4) B in all (L2 keeps their re-reads).
    FLOPs: 2·T per element for the GEMM and ~10-15 for the rule. Unfused, the gradient would
    also be written and read back (+8 B fp32): that traffic and that buffer are what FORGE removes.
    WRITE_OLD also writes the pre-update W as bf16 (2 B) into `wold_ptr`, so that under autocast
    the input gradient dX = dY·W_old needs no bf16 weight copy kept from the forward.
    `tune_t`, `tune_nk` are the tuner's size buckets (unused in the body).
    SCALARS_FROM_PTR (capturable optimizers): the scalar arguments are ignored and read from
    `scalars_ptr` (`load_step_scalars`); `seed_key` is then the parameter's key, mixed with the
    device step (`device_seed_key`).
    """
    if SCALARS_FROM_PTR:
        (
            lr,
            decay,
            weight_decay,
            beta1,
            beta2,
            eps,
            step_size,
            bc2_sqrt,
            dampening,
            first_step,
            step,
        ) = load_step_scalars(scalars_ptr)
        seed_key = device_seed_key(seed_key, step)
    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_k = tl.cdiv(K, BLOCK_K)
    # Grouped launch order: GROUP_N row-tiles share each X column-tile while it sits in L2.
    pids_in_group = GROUP_N * num_pid_k
    group = pid // pids_in_group
    first_n = group * GROUP_N
    group_size = min(num_pid_n - first_n, GROUP_N)
    pid_n = first_n + (pid % pids_in_group) % group_size
    pid_k = (pid % pids_in_group) // group_size

    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    n_ok = rn < N
    k_ok = rk < K
    tile_mask = n_ok[:, None] & k_ok[None, :]
    w_offs = rn[:, None] * K + rk[None, :]

    if PREFETCH:
        # Issue the epilogue's loads first: their latency hides under the reduction loop.
        w, s1, s2 = _load_tile(w_ptr, s1_ptr, s2_ptr, w_offs, tile_mask, RULE, W_BF16)

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

    if PREFETCH:
        _epilogue(
            w_ptr,
            s1_ptr,
            s2_ptr,
            wold_ptr,
            w_offs,
            tile_mask,
            w,
            s1,
            s2,
            acc,
            lr,
            decay,
            weight_decay,
            beta1,
            beta2,
            eps,
            step_size,
            bc2_sqrt,
            dampening,
            first_step,
            seed_key,
            RULE,
            NESTEROV,
            W_BF16,
            STOCHASTIC,
            WRITE_OLD,
        )
    elif EPI_SPLIT == 1:
        _update_tile(
            w_ptr,
            s1_ptr,
            s2_ptr,
            wold_ptr,
            acc,
            rn,
            rk,
            N,
            K,
            lr,
            decay,
            weight_decay,
            beta1,
            beta2,
            eps,
            step_size,
            bc2_sqrt,
            dampening,
            first_step,
            seed_key,
            RULE,
            NESTEROV,
            W_BF16,
            STOCHASTIC,
            WRITE_OLD,
        )
    else:
        # EPI_SPLIT (2 or 4) column slices, in halves: the tile's, or each half's.
        for i in tl.static_range(EPI_SPLIT // 2):
            if EPI_SPLIT == 2:  # noqa: SIM108 (constexpr branch)
                part = acc
            else:
                part = _column_halves(acc, BLOCK_N, BLOCK_K)[i]
            _update_halves(
                w_ptr,
                s1_ptr,
                s2_ptr,
                wold_ptr,
                part,
                rn,
                pid_k * BLOCK_K + i * (BLOCK_K // 2),
                N,
                K,
                lr,
                decay,
                weight_decay,
                beta1,
                beta2,
                eps,
                step_size,
                bc2_sqrt,
                dampening,
                first_step,
                seed_key,
                RULE,
                NESTEROV,
                W_BF16,
                STOCHASTIC,
                WRITE_OLD,
                BLOCK_N,
                BLOCK_K // (EPI_SPLIT // 2),
            )
