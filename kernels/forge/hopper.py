"""FORGE's fused step for large token counts on Hopper: a persistent, TMA-fed dW GEMM whose
epilogue is the optimizer step (issue 10, part 3).

The GEMM is dW = dYᵀ·X with dy [T, N] and x [T, K] row-major: both operands are "transposed"
for a standard GEMM, the reduction runs over their rows. Tensor descriptors load [BLOCK_T,
BLOCK_N] tiles of dy and [BLOCK_T, BLOCK_K] tiles of x into shared memory (TMA on sm_90, zero
fill past every edge, so T, N and K need not be multiples of a tile), and `tl.dot(a.T, b)`
hands the transposed A straight from shared memory to the tensor cores (wgmma reads an
M-major bf16 A). One program per SM (or two: `OCCUPANCY`) walks the output tiles in grouped
order; the [BLOCK_N, BLOCK_K] fp32 accumulator then goes, in `EPI_SPLIT` column slices (so W
and its fp32 states fit in registers beside it), through the optimizer step: W and its states
move through tensor descriptors too (`_step_slice_tma`; no 64-bit address per element beside
the accumulator), in a pipelined run-time loop (`EPI_PIPE`), and the rule and rounding are
`kernels.forge.kernels`' (`_apply_rule`, `_fp32_to_bf16_bits`; the pointer epilogue is its
`_update_tile`/`_update_halves`) — the update math lives there only. dW is never written.

What one launch must move and compute (N·K weights, T tokens; b = 2 for bf16/fp16 operands):
- operands: T·(N + K)·b bytes once (4096², T=8192: 134 MB); every further read of an operand
  tile should hit L2 (grouped order keeps GROUP_N row-tiles on one column band of x);
- epilogue, per weight: W read + write (8 B fp32, 4 B bf16), each fp32 state read + write (8 B):
  24 B fp32 AdamW (403 MB at 4096²), 20 B bf16-weight AdamW, 16 B Lion/SGD fp32; +2 B when the
  pre-update W is written in bf16 for dX (WRITE_OLD);
- FLOPs: 2·T·N·K for the GEMM (275 GFLOP at T=8192, 4096²) and ~10-15 per weight for the rule.
At T=8192, 4096², fp32 AdamW the GEMM is ~0.38 ms at cuBLAS's ~720 TFLOP/s and the epilogue
traffic ~0.1 ms at ~4 TB/s: the two overlap only across programs, which is why the sweep has
two programs a SM, started out of step (`STAGGER`), so that one steps its W tiles while the
other multiplies, beside the larger tiles.

Feature detection is at import and per config: tensor descriptors (`tl.make_tensor_descriptor`
in-kernel, which needs `triton.set_allocator`, or the host-side
`triton.tools.tensor_descriptor.TensorDescriptor`); a config whose feature this Triton lacks is
left out of `configs()`. The tile loop takes no `tl.range` hints: on the H200 `flatten` timed
the same as without (0.451 ms), and `warp_specialize` gives the same sm_90 code on triton 3.6
and 3.9.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import triton
import triton.language as tl

try:  # the SM's nanosecond timer (inline PTX), for STAGGER; not in every Triton
    from triton.language.extra.cuda import globaltimer
except ImportError:  # pragma: no cover - older triton
    globaltimer = None

from .kernels import (
    ADAMW,
    INTERPRET,
    _apply_rule,
    _bf16_bits_to_fp32,
    _column_halves,
    _fp32_to_bf16_bits,
    _update_halves,
    _update_tile,
    device_seed_key,
    load_step_scalars,
)
from .rules import Rule, StepScalars

try:  # host-side descriptors (triton >= 3.3)
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - older triton
    TensorDescriptor = None

HAS_DEVICE_DESC = hasattr(tl, "make_tensor_descriptor") and hasattr(triton, "set_allocator")
HAS_HOST_DESC = TensorDescriptor is not None

# Tokens from which the dispatcher prefers this kernel (set from the H200 sweep of
# bench/kernels/forge_hopper.py; the tuner still times it against the classic kernel).
# Below MIN_TOKENS the dispatcher keeps the classic kernel for eager steps: a Hopper launch goes
# through the JIT (host-side work a bound direct launch skips), and at small T the step is paced
# by the host. A replayed step (a capturable optimizer's, under a CUDA graph) pays no host time,
# so from MIN_TOKENS_REPLAYED the tuner times the Hopper configs there too. H200 (bench
# forge_hopper, one layer 4096², AdamW + bf16 old W): Hopper 0.161 / 0.211 / 0.454 ms against
# the classic kernel's 0.185 / 0.296 / 0.701 ms at T = 512 / 2048 / 8192.
MIN_TOKENS = 4096
MIN_TOKENS_REPLAYED = 512
OPERAND_DTYPES = (torch.bfloat16, torch.float16)
_TMA_ALIGN_BYTES = 16  # base address and every stride but the last: multiples of 16 bytes
# The scalar arguments of a launch that reads its scalars from the device buffer (ignored).
_UNUSED_SCALARS = StepScalars(lr=0.0).kernel_args()


@triton.jit
def _tile_coords(tile, num_pid_n, num_pid_k, GROUP_N: tl.constexpr):
    """Grouped order: GROUP_N row-tiles share each column band of x while it sits in L2."""
    pids_in_group = GROUP_N * num_pid_k
    group = tile // pids_in_group
    first_n = group * GROUP_N
    group_size = min(num_pid_n - first_n, GROUP_N)
    pid_n = first_n + (tile % pids_in_group) % group_size
    pid_k = (tile % pids_in_group) // group_size
    return pid_n, pid_k


@triton.jit
def _update_slices(
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    acc,
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
    EPI_SPLIT: tl.constexpr,
):
    """Step the [ROWS, COLS] gradient tile `acc` (columns k0 ..) in EPI_SPLIT column slices
    (1, 2, 4 or 8), one after the other, through `kernels._update_tile`/`_update_halves`."""
    if EPI_SPLIT == 1:
        _update_tile(
            w_ptr,
            s1_ptr,
            s2_ptr,
            wold_ptr,
            acc,
            rn,
            k0 + tl.arange(0, COLS),
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
    elif EPI_SPLIT == 2:
        _update_halves(
            w_ptr,
            s1_ptr,
            s2_ptr,
            wold_ptr,
            acc,
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
            RULE,
            NESTEROV,
            W_BF16,
            STOCHASTIC,
            WRITE_OLD,
            ROWS,
            COLS,
        )
    elif EPI_SPLIT == 4:
        for i in tl.static_range(2):
            _update_halves(
                w_ptr,
                s1_ptr,
                s2_ptr,
                wold_ptr,
                _column_halves(acc, ROWS, COLS)[i],
                rn,
                k0 + i * (COLS // 2),
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
                ROWS,
                COLS // 2,
            )
    else:  # 8 slices: halves of halves, each stepped in its two halves
        for i in tl.static_range(2):
            half = _column_halves(acc, ROWS, COLS)[i]
            for j in tl.static_range(2):
                _update_halves(
                    w_ptr,
                    s1_ptr,
                    s2_ptr,
                    wold_ptr,
                    _column_halves(half, ROWS, COLS // 2)[j],
                    rn,
                    k0 + i * (COLS // 2) + j * (COLS // 4),
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
                    ROWS,
                    COLS // 4,
                )


@triton.jit
def _column_slice(t, i: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr, SPLIT: tl.constexpr):
    """Column slice i of SPLIT (1, 2, 4 or 8) of a [ROWS, COLS] tile, by repeated halving."""
    if SPLIT >= 2:
        t = _column_halves(t, ROWS, COLS)[(i // (SPLIT // 2)) % 2]
    if SPLIT >= 4:
        t = _column_halves(t, ROWS, COLS // 2)[(i // (SPLIT // 4)) % 2]
    if SPLIT >= 8:
        t = _column_halves(t, ROWS, COLS // 4)[i % 2]
    return t


@triton.jit
def _step_slice_tma(
    w_desc,
    s1_desc,
    s2_desc,
    wold_desc,
    g,
    n0,
    k0,
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
    """`kernels._epilogue` with tensor-descriptor I/O: the [ROWS, COLS] tiles of W and its
    states at (n0, k0) come in and go out through TMA (zero fill past the edges on the way in,
    clipped on the way out), so no per-element 64-bit addresses sit in registers beside the
    accumulator; the rule is `kernels._apply_rule`, the rounding `kernels._fp32_to_bf16_bits`.
    """
    if W_BF16:  # noqa: SIM108 (constexpr branch)
        w = _bf16_bits_to_fp32(w_desc.load([n0, k0]))
    else:
        w = w_desc.load([n0, k0])
    s1 = s1_desc.load([n0, k0])
    if RULE == ADAMW:  # noqa: SIM108 (constexpr branch)
        s2 = s2_desc.load([n0, k0])
    else:
        s2 = s1
    # Element offsets in W, the stochastic rounding's counter (as the pointer epilogue's).
    offs = (n0 + tl.arange(0, ROWS))[:, None] * K + (k0 + tl.arange(0, COLS))[None, :]
    if WRITE_OLD:
        wold_desc.store([n0, k0], _fp32_to_bf16_bits(w, offs, 0, False))
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
    if W_BF16:
        w_desc.store([n0, k0], _fp32_to_bf16_bits(w, offs, seed_key, STOCHASTIC))
    else:
        w_desc.store([n0, k0], w)
    s1_desc.store([n0, k0], s1)
    if RULE == ADAMW:
        s2_desc.store([n0, k0], s2)


@triton.jit
def _step_tile(
    tile,
    dy_desc,
    x_desc,
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    T,
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
    UPCAST: tl.constexpr,
    WRITE_OLD: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    GROUP_N: tl.constexpr,
    EPI_SPLIT: tl.constexpr,
    EPI_TMA: tl.constexpr,
    EPI_PIPE: tl.constexpr,
):
    """One output tile: reduce dYᵀ·X over T from TMA-loaded tiles, then step W under it in
    EPI_SPLIT column slices. EPI_TMA: `w_ptr` .. `wold_ptr` are tensor descriptors of one slice
    (`_step_slice_tma`); else pointers (`_update_slices`, kernels.py's pointer epilogue)."""
    pid_n, pid_k = _tile_coords(tile, tl.cdiv(N, BLOCK_N), tl.cdiv(K, BLOCK_K), GROUP_N)
    n0 = pid_n * BLOCK_N
    k0 = pid_k * BLOCK_K
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        a = dy_desc.load([t0, n0])  # [BLOCK_T, BLOCK_N], zero past T and N
        b = x_desc.load([t0, k0])  # [BLOCK_T, BLOCK_K], zero past T and K
        if UPCAST:
            # The interpreter's tl.dot is wrong on bf16: upcast (exact) and multiply in fp32.
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a.T, b, acc)
    if EPI_TMA and EPI_PIPE > 0:
        # The slices in a run-time loop the pipeliner overlaps (EPI_PIPE stages): the next
        # slice's W/m/v loads are in flight while this one is stepped. Slice i is picked out of
        # the register tile by a select-and-sum over the slice axis, which lies within each
        # thread's registers (a handful of instructions a slice, exact but for the sign of 0).
        slices = tl.reshape(acc, (BLOCK_N, EPI_SPLIT, BLOCK_K // EPI_SPLIT))
        which = tl.arange(0, EPI_SPLIT)[None, :, None]
        for i in tl.range(0, EPI_SPLIT, num_stages=EPI_PIPE):
            _step_slice_tma(
                w_ptr,
                s1_ptr,
                s2_ptr,
                wold_ptr,
                tl.sum(tl.where(which == i, slices, 0.0), axis=1),
                n0,
                k0 + i * (BLOCK_K // EPI_SPLIT),
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
                BLOCK_K // EPI_SPLIT,
            )
    elif EPI_TMA:
        for i in tl.static_range(EPI_SPLIT):
            _step_slice_tma(
                w_ptr,
                s1_ptr,
                s2_ptr,
                wold_ptr,
                _column_slice(acc, i, BLOCK_N, BLOCK_K, EPI_SPLIT),
                n0,
                k0 + i * (BLOCK_K // EPI_SPLIT),
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
                BLOCK_K // EPI_SPLIT,
            )
    else:
        _update_slices(
            w_ptr,
            s1_ptr,
            s2_ptr,
            wold_ptr,
            acc,
            n0 + tl.arange(0, BLOCK_N),
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
            RULE,
            NESTEROV,
            W_BF16,
            STOCHASTIC,
            WRITE_OLD,
            BLOCK_N,
            BLOCK_K,
            EPI_SPLIT,
        )


@triton.jit(do_not_specialize=["seed_key", "first_step"])
def _forge_hopper_kernel(
    dy,
    x,
    w_ptr,
    s1_ptr,
    s2_ptr,
    wold_ptr,
    scalars_ptr,
    T,
    N,
    K,
    stride_dy_t,
    stride_x_t,
    num_programs,
    stagger_ns,
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
    UPCAST: tl.constexpr,
    WRITE_OLD: tl.constexpr,
    SCALARS_FROM_PTR: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    GROUP_N: tl.constexpr,
    EPI_SPLIT: tl.constexpr,
    EPI_TMA: tl.constexpr,
    EPI_PIPE: tl.constexpr,
    HOST_DESC: tl.constexpr,
    STAGGER: tl.constexpr,
):
    """W[N, K] (and its fp32 states) <- rule(W, dYᵀ·X), persistent over [BLOCK_N, BLOCK_K] tiles.

    dy: [T, N], x: [T, K], bf16 or fp16 with unit column stride — host-side tensor descriptors
    when HOST_DESC, else plain pointers made into descriptors here (row strides `stride_dy_t`,
    `stride_x_t`). W, states, `wold_ptr` and the scalars as in `_forge_linear_step_kernel`.
    Program p steps tiles p, p + num_programs, ... in grouped order.
    SCALARS_FROM_PTR (capturable optimizers): the scalars come from `scalars_ptr` and the
    stochastic-rounding key from `seed_key` (the parameter's) and the device step, through
    `kernels.load_step_scalars`/`device_seed_key`, as in the classic kernel.
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
    if HOST_DESC:
        dy_desc = dy
        x_desc = x
    else:
        dy_desc = tl.make_tensor_descriptor(
            dy, shape=[T, N], strides=[stride_dy_t, 1], block_shape=[BLOCK_T, BLOCK_N]
        )
        x_desc = tl.make_tensor_descriptor(
            x, shape=[T, K], strides=[stride_x_t, 1], block_shape=[BLOCK_T, BLOCK_K]
        )
    if EPI_TMA:
        # One [BLOCK_N, BLOCK_K // EPI_SPLIT] slice of W and each state a descriptor access.
        w_io = tl.make_tensor_descriptor(
            w_ptr, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K // EPI_SPLIT]
        )
        s1_io = tl.make_tensor_descriptor(
            s1_ptr, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K // EPI_SPLIT]
        )
        s2_io = tl.make_tensor_descriptor(
            s2_ptr, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K // EPI_SPLIT]
        )
        wold_io = tl.make_tensor_descriptor(
            wold_ptr, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K // EPI_SPLIT]
        )
    else:
        w_io = w_ptr
        s1_io = s1_ptr
        s2_io = s2_ptr
        wold_io = wold_ptr
    if STAGGER:  # noqa: SIM102 (constexpr branch)
        # Two programs a SM run in lockstep, so both would reach their epilogue (memory-bound)
        # at once and leave the tensor cores idle. The second half of the grid starts
        # `stagger_ns` later: meanwhile its SM partner multiplies alone at the full rate, and
        # from then on one program's epilogue overlaps the other's reduction.
        if tl.program_id(0) >= num_programs // 2:
            t_end = globaltimer() + stagger_ns
            while globaltimer() < t_end:
                pass
    num_tiles = tl.cdiv(N, BLOCK_N) * tl.cdiv(K, BLOCK_K)
    for tile in tl.range(tl.program_id(0), num_tiles, num_programs):
        _step_tile(
            tile,
            dy_desc,
            x_desc,
            w_io,
            s1_io,
            s2_io,
            wold_io,
            T,
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
            UPCAST,
            WRITE_OLD,
            BLOCK_N,
            BLOCK_K,
            BLOCK_T,
            GROUP_N,
            EPI_SPLIT,
            EPI_TMA,
            EPI_PIPE,
        )


def make_config(
    bn: int,
    bk: int,
    bt: int,
    warps: int,
    stages: int,
    split: int,
    *,
    group: int = 8,
    occupancy: int = 1,
    epi_tma: bool = True,
    epi_pipe: int = 0,
    host_desc: bool = False,
    stagger: float = 0.0,
) -> triton.Config:
    """One config: [bn, bk] output tile, bt tokens a step, the epilogue in `split` column slices
    (through descriptors when `epi_tma`), `occupancy` programs a SM, operand descriptors made on
    the host (`host_desc`) or in the kernel.
    `stagger` (two programs a SM): the second half of the grid starts this fraction of one
    tile's estimated reduction time late (see `_stagger_ns`). `epi_pipe` > 0 steps the slices
    in a run-time loop pipelined over that many stages (W and its states load under one
    barrier, one round trip a slice instead of one each; at 3 stages the next slice's loads are
    in flight while this one is stepped); 0 unrolls them.

    Carries the keys `launch.config_name` reads (PREFETCH is always off here) and HOPPER, which
    tells the dispatcher which kernel a tuned config belongs to.
    """
    return triton.Config(
        {
            "BLOCK_N": bn,
            "BLOCK_K": bk,
            "BLOCK_T": bt,
            "GROUP_N": group,
            "PREFETCH": False,
            "EPI_SPLIT": split,
            "HOPPER": True,
            "OCCUPANCY": occupancy,
            "EPI_TMA": epi_tma,
            "EPI_PIPE": epi_pipe,
            "HOST_DESC": host_desc,
            "STAGGER": stagger,
        },
        num_warps=warps,
        num_stages=stages,
    )


def is_hopper_config(cfg: triton.Config) -> bool:
    """Whether a (tuned) config is one of this module's."""
    return bool(cfg.kwargs.get("HOPPER", False))


def config_name(cfg: triton.Config) -> str:
    """A config's name in tables and the tuner's log (unique within the sweep)."""
    k = cfg.kwargs
    flags = [
        name
        for name, on in (
            ("epi-ptr", not k["EPI_TMA"]),
            (f"epipipe{k['EPI_PIPE']}", k["EPI_PIPE"] > 0),
            ("hostdesc", k["HOST_DESC"]),
            (f"stagger{k['STAGGER']:g}", k["STAGGER"] > 0),
        )
        if on
    ]
    return (
        f"tma {k['BLOCK_N']}x{k['BLOCK_K']}x{k['BLOCK_T']} w{cfg.num_warps} s{cfg.num_stages}"
        f" split{k['EPI_SPLIT']} group{k['GROUP_N']} occ{k['OCCUPANCY']}"
        + "".join(f" {f}" for f in flags)
    )


# make_config's arguments for each config of the sweep. Shared memory a stage: (BLOCK_N +
# BLOCK_K)·BLOCK_T·2 B (48 KiB at 128 + 256 and 64), plus the epilogue's slice buffers; an H200
# gives a block up to 227 KiB. Registers: the fp32 accumulator takes BLOCK_N·BLOCK_K / (32·warps)
# a thread; one slice's W, m, v a quarter... an eighth of that again (EPI_SPLIT); with pointer
# I/O (epi-ptr) each element of a slice also holds four 64-bit addresses, which is what spills
# the big tiles (ptxas, sm_90): hence the descriptor epilogue. Pipelined (epi_pipe), its slice
# buffers reuse the operand stages' shared memory (the reduction is over by then). No warp_spec
# config: triton 3.6 and 3.9 emit the same sm_90 PTX for this loop with and without it (no
# setmaxnreg, no producer warps), so it would only cost a compile.
# Two programs a SM, one warpgroup each: while one steps its W tiles the other multiplies.
_PAIR: dict[str, Any] = {
    "bn": 128, "bk": 128, "bt": 64, "warps": 4, "stages": 3, "split": 8, "occupancy": 2,
    "epi_pipe": 3,
}  # fmt: skip
_BIG: dict[str, Any] = {"bn": 128, "bk": 256, "bt": 64, "warps": 8, "stages": 3, "split": 8}
_BIG_PIPED = {**_BIG, "epi_pipe": 3}  # two slice buffers: the next slice loads meanwhile
SWEEP: list[dict[str, Any]] = [
    _BIG_PIPED,
    {**_BIG_PIPED, "stages": 4},
    {**_BIG_PIPED, "epi_pipe": 2},
    {**_BIG_PIPED, "bn": 256, "bk": 128},
    _PAIR,
    {**_PAIR, "stagger": 0.5},
    {**_PAIR, "stagger": 0.25},
    {"bn": 128, "bk": 128, "bt": 64, "warps": 8, "stages": 4, "split": 4, "epi_pipe": 3},
    {**_BIG_PIPED, "bt": 32, "stages": 6},
    {**_BIG_PIPED, "host_desc": True},
    _BIG,  # the slices unrolled: three load round trips a slice, the pipelined loop's one
    {**_PAIR, "epi_pipe": 0, "stagger": 0.5},
    {**_BIG, "epi_tma": False},  # pointer epilogue: spills at this tile
    {"bn": 128, "bk": 128, "bt": 64, "warps": 8, "stages": 4, "split": 4, "epi_tma": False},
]  # fmt: skip

# The dispatcher's candidates (timed by launch's tuner against the classic kernel's, each a
# compile in the claim's tuning): the sweep's best on the H200 (bench/kernels/forge_hopper.py,
# T=8192 4096²: 0.450 and 0.450 ms; the s4 one also the best at T=2048 and 512). The host-side
# descriptor variant (0.448 ms) is left out: it builds two descriptors in Python every launch.
TUNE = [SWEEP[0], SWEEP[1]]


def _supported(cfg: triton.Config) -> bool:
    """The Triton here has what the config asks for."""
    k = cfg.kwargs
    if k["HOST_DESC"] and not HAS_HOST_DESC:
        return False
    if (k["EPI_TMA"] or not k["HOST_DESC"]) and not HAS_DEVICE_DESC:
        return False
    return k["STAGGER"] == 0 or globaltimer is not None


def sweep_configs() -> list[triton.Config]:
    """Every config the benchmark sweeps (those this Triton supports); one small one under the
    CPU interpreter."""
    if INTERPRET:
        return [default_config()]
    return [c for c in (make_config(**s) for s in SWEEP) if _supported(c)]


def configs() -> list[triton.Config]:
    """The candidates the dispatcher's tuner times (a subset of the sweep)."""
    if INTERPRET:
        return [default_config()]
    return [c for c in (make_config(**s) for s in TUNE) if _supported(c)]


@functools.cache
def default_config() -> triton.Config:
    """The config used without tuning; an interpreter-sized tile under the interpreter."""
    if INTERPRET:
        return make_config(32, 32, 16, 4, 1, 2, group=2)
    return make_config(**SWEEP[0])


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _num_programs(N: int, K: int, cfg: triton.Config, device: torch.device) -> int:
    k = cfg.kwargs
    tiles = -(-N // k["BLOCK_N"]) * -(-K // k["BLOCK_K"])
    if device.type != "cuda":
        return min(tiles, 4)  # the interpreter: a few programs, each stepping several tiles
    return max(1, min(tiles, k["OCCUPANCY"] * _sm_count(device.index or 0)))


# A Hopper SM's bf16 tensor-core rate, roughly (H100/H200: ~0.75-1 PFLOP/s over 132 SMs). It
# only sets STAGGER's start offset, a scheduling guess: no speed is judged against it.
_GUESSED_SM_FLOPS = 6e12


def _stagger_ns(T: int, cfg: triton.Config) -> int:
    """The second half of the grid's start delay: `STAGGER` of one tile's reduction time, as
    guessed from `_GUESSED_SM_FLOPS` (at most 1 ms)."""
    k = cfg.kwargs
    tile_s = 2.0 * T * k["BLOCK_N"] * k["BLOCK_K"] / _GUESSED_SM_FLOPS
    return int(min(k["STAGGER"] * tile_s * 1e9, 1e6))


def hopper_eligible(
    T: int,
    N: int,
    K: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    replayed: bool = False,
) -> bool:
    """Whether the dispatcher should run this kernel: CUDA sm_90+, bf16/fp16 operands, at least
    MIN_TOKENS tokens (MIN_TOKENS_REPLAYED for a `replayed` step: a capturable optimizer's,
    whose scalars live on the device), and rows of dy and x whose byte length TMA takes
    (multiples of 16 B). `operands_fit` checks the tensors themselves (strides, alignment)."""
    if INTERPRET or device.type != "cuda" or not (HAS_DEVICE_DESC or HAS_HOST_DESC):
        return False
    least = MIN_TOKENS_REPLAYED if replayed else MIN_TOKENS
    if dtype not in OPERAND_DTYPES or least > T:
        return False
    per_row = _TMA_ALIGN_BYTES // torch.finfo(dtype).bits * 8
    if N % per_row or K % per_row or N * K >= 2**31:
        return False
    return torch.cuda.get_device_capability(device) >= (9, 0)


def operands_fit(dy: torch.Tensor, x: torch.Tensor) -> bool:
    """dy and x can back a tensor descriptor: unit column stride, 16-byte aligned base and row
    stride."""
    for t in (dy, x):
        if t.dim() != 2 or t.stride(1) != 1 or t.dtype not in OPERAND_DTYPES:
            return False
        if (t.stride(0) * t.element_size()) % _TMA_ALIGN_BYTES:
            return False
        if t.data_ptr() % _TMA_ALIGN_BYTES:
            return False
    return True


def _epilogue_fits(tensors: Sequence[torch.Tensor]) -> bool:
    """W, its states and the old-W buffer can back descriptors: 16-byte aligned bases and rows
    (contiguous [N, K], checked by `launch.check_inputs`)."""
    return all(
        t.data_ptr() % _TMA_ALIGN_BYTES == 0
        and (t.stride(0) * t.element_size()) % _TMA_ALIGN_BYTES == 0
        for t in tensors
    )


def _scratch(size: int, alignment: int, stream: int | None) -> torch.Tensor:
    """Global memory for the in-kernel descriptors (128 B each, per program)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _ensure_allocator() -> None:
    """In-kernel descriptors need `triton.set_allocator`. Its setting is a context variable,
    per thread, and autograd runs backward (where FORGE steps) on a thread of its own: set it
    here, on the launching thread, unless someone already set one."""
    try:
        from triton.runtime._allocation import NullAllocator, _allocator

        if not isinstance(_allocator.get(), NullAllocator):
            return
    except ImportError:  # pragma: no cover - another layout: set it every time
        pass
    triton.set_allocator(_scratch)


def launch(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    stochastic: bool,
    seed_key: int,
    ieee: bool,
    w_old_out: torch.Tensor | None,
    config: triton.Config,
    scalars: torch.Tensor | None = None,
) -> Any:
    """Launch the Hopper kernel; the arguments of `launch._launch` (inputs checked by the
    caller, `launch.check_inputs`). `ieee` must be False: this kernel takes bf16/fp16 operands
    only. `scalars`: a capturable optimizer's device buffer (`rules.DeviceScalars.buffer`),
    read in the kernel instead of `sc` (`seed_key` is then the parameter's key). Returns None
    (no direct-launch handle: at the token counts it serves, the JIT's per-call host cost hides
    under the kernel)."""
    if ieee:
        raise ValueError("the Hopper kernel multiplies bf16/fp16 operands, not fp32 (ieee)")
    if not operands_fit(dy, x):
        raise ValueError(
            "dy and x must be bf16/fp16 with unit column stride, 16-byte aligned rows and base"
        )
    T, N = dy.shape
    K = x.shape[1]
    k = config.kwargs
    w_bf16 = weight.dtype == torch.bfloat16
    w_arg = weight.view(torch.int16) if w_bf16 else weight
    s1 = states[0]
    s2 = states[1] if len(states) > 1 else s1
    wold = w_old_out.view(torch.int16) if w_old_out is not None else w_arg
    # A weight whose rows TMA cannot address steps through the pointer epilogue instead.
    epi_tma = k["EPI_TMA"] and _epilogue_fits((w_arg, s1, s2, wold))
    if k["HOST_DESC"]:
        dy_arg = TensorDescriptor.from_tensor(dy, [k["BLOCK_T"], k["BLOCK_N"]])
        x_arg = TensorDescriptor.from_tensor(x, [k["BLOCK_T"], k["BLOCK_K"]])
    else:
        dy_arg, x_arg = dy, x
    if (epi_tma or not k["HOST_DESC"]) and dy.device.type == "cuda":
        _ensure_allocator()
    programs = _num_programs(N, K, config, dy.device)
    stagger = k["STAGGER"] > 0 and dy.device.type == "cuda" and globaltimer is not None
    stagger_ns = _stagger_ns(T, config) if stagger else 0
    _forge_hopper_kernel[(programs, 1, 1)](
        dy_arg,
        x_arg,
        w_arg,
        s1,
        s2,
        wold,
        w_arg if scalars is None else scalars,
        T,
        N,
        K,
        dy.stride(0),
        x.stride(0),
        programs,
        stagger_ns,
        *(sc.kernel_args() if scalars is None else _UNUSED_SCALARS),
        seed_key,
        RULE=int(rule),
        NESTEROV=bool(sc.nesterov),
        W_BF16=w_bf16,
        STOCHASTIC=bool(stochastic),
        UPCAST=INTERPRET,
        WRITE_OLD=w_old_out is not None,
        SCALARS_FROM_PTR=scalars is not None,
        BLOCK_N=k["BLOCK_N"],
        BLOCK_K=k["BLOCK_K"],
        BLOCK_T=k["BLOCK_T"],
        GROUP_N=k["GROUP_N"],
        EPI_SPLIT=k["EPI_SPLIT"],
        EPI_TMA=epi_tma,
        EPI_PIPE=k["EPI_PIPE"] if epi_tma else 0,
        HOST_DESC=k["HOST_DESC"],
        STAGGER=stagger,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    return None


def forge_linear_step_hopper_(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    *,
    stochastic: bool = True,
    seed_key: int = 0,
    w_old_out: torch.Tensor | None = None,
    config: triton.Config | None = None,
    scalars: torch.Tensor | None = None,
) -> None:
    """`launch.forge_linear_step_` through this kernel (checked inputs; `config` or the
    default; `scalars` a capturable optimizer's device buffer): what the tests and the
    benchmark call."""
    from .launch import check_inputs

    check_inputs(dy, x, weight, states, rule, w_old_out)
    launch(
        dy,
        x,
        weight,
        states,
        rule,
        sc,
        stochastic,
        seed_key,
        False,
        w_old_out,
        config or default_config(),
        scalars,
    )
