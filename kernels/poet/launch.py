"""Host launchers of the POET-X kernels and their autograd Functions.

The layer's Function takes the rotation blocks (R_k, P_k) as inputs and returns their
gradients in fp32, so the chain θ → Q (skew) → R (Cayley–Neumann) → layer is three Functions
glued by autograd, each tested alone against the plain-PyTorch reference.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from typing import Any

import torch
import triton
import triton.runtime
from triton.runtime.errors import OutOfResources

from kernels.poet import kernels as K
from kernels.poet.reference import TAYLOR4, n_free
from kernels.runtime.device import interpreting
from kernels.runtime.launch import FAST_LAUNCH, BoundLaunch, hooks_set

# products of the Cayley–Neumann kernels: fp32 ("ieee"), tf32, or bf16 operands (the latter
# for 16-bit layers on the GPU; the interpreter computes it in fp32: its bf16 dot is wrong)
PRECISIONS = ("ieee", "tf32", "bf16")
_ROTATE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_device(*tensors: torch.Tensor) -> None:
    dev = tensors[0].device
    for t in tensors:
        if t.device != dev:
            raise ValueError(f"tensors on different devices: {t.device} and {dev}")
    if not (dev.type == "cuda" or (dev.type == "cpu" and interpreting())):
        raise RuntimeError(
            "POET-X kernels need a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors); "
            "use kernels.poet.reference on the CPU"
        )


def _check_perm(perm: torch.Tensor | None, n: int, name: str) -> None:
    if perm is None:
        return
    if perm.dtype != torch.int32 or perm.ndim != 1 or perm.numel() != n or not perm.is_contiguous():
        raise ValueError(f"{name} must be a contiguous int32 permutation of {n} columns")


@functools.lru_cache(maxsize=64)
def _triu(block: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.triu_indices(block, block, 1)
    return rows.to(device, torch.int32), cols.to(device, torch.int32)


# --------------------------------------------------------------------------- direct launches
#
# A POET-X layer's forward + backward issues ~19 Triton launches; through the JIT each costs tens
# of µs of host time (argument binding, specialisation key, the autotuner's key), which paced
# the 4096² layer on the H200 (2.4 ms plain against 1.1 ms replayed from CUDA graphs). The first
# launch of each specialisation goes through the JIT (it compiles, and tunes where tuned); later
# ones call the compiled kernel directly (kernels.runtime.launch.BoundLaunch). The key holds
# everything Triton specialises on: tensor dtypes and 16-byte alignment, integers' ==1, %16 and
# 32-bit range, constexpr values, warps and stages. Off under the interpreter.

_BOUND: dict[tuple, tuple[Any, BoundLaunch]] = {}


def _spec(v: Any) -> tuple:
    if isinstance(v, torch.Tensor):
        return ("t", v.dtype, v.data_ptr() % 16 == 0)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int):
        return ("i", v == 1, v % 16 == 0, -(2**31) <= v < 2**31)
    if isinstance(v, float):
        return ("f",)
    return ("v", v)


def _direct(bound: BoundLaunch, grid: tuple[int, ...], ordered: list[Any]) -> bool:
    grid3 = (*grid, 1, 1)[:3]
    if hooks_set():  # a profiler's Triton hooks want each launch's metadata
        return bound.with_hooks(grid3, *ordered)
    return bound(grid3, *ordered)


def _launch(fn: Any, grid: Any, *args: Any, **kwargs: Any) -> None:
    """fn[grid](*args, **kwargs), directly after the first launch of its specialisation. `fn` is
    a JIT kernel or an autotuned one (then `grid` may be a function of the config's meta)."""
    tuned = isinstance(fn, triton.runtime.Autotuner)
    jit = fn.fn if tuned else fn
    names = jit.arg_names
    vals = dict(zip(names, args, strict=False))
    vals.update(kwargs)
    if not FAST_LAUNCH["on"]:
        fn[grid](*args, **kwargs)
        return
    tune_keys = set(fn.keys) if tuned else set()
    cexpr = {names[i] for i in jit.constexprs}
    dev = next(v for v in vals.values() if isinstance(v, torch.Tensor)).device.index
    key = (
        id(fn),
        dev,
        kwargs.get("num_warps"),
        kwargs.get("num_stages"),
        tuple(
            vals[n] if n in cexpr or n in tune_keys else _spec(vals[n]) for n in names if n in vals
        ),
    )
    hit = _BOUND.get(key)
    if hit is None:
        handle = fn[grid](*args, **kwargs)
        config = fn.best_config if tuned else None
        bound = BoundLaunch.of(handle, dev)
        if bound is not None:
            _BOUND[key] = (config, bound)
        return
    config, bound = hit
    meta = {**vals, **config.kwargs} if config is not None else vals
    ordered = [meta[n] for n in names]
    g = grid(meta) if callable(grid) else grid
    if not _direct(bound, tuple(g), ordered):
        fn[grid](*args, **kwargs)


# --------------------------------------------------------------------------- skew packing


def skew_from_vec_(
    theta: torch.Tensor, block: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """[nb, b(b−1)/2] → skew [nb, b, b] (launcher, no autograd; `out` contiguous if given)."""
    _check_device(theta)
    if theta.ndim != 2 or theta.shape[1] != n_free(block):
        raise ValueError(f"theta must be [nb, {n_free(block)}] for block {block}")
    theta = theta.contiguous()
    nb = theta.shape[0]
    q = (
        torch.empty(nb, block, block, dtype=theta.dtype, device=theta.device)
        if out is None
        else out
    )
    if q.shape != (nb, block, block) or not q.is_contiguous() or q.dtype != theta.dtype:
        raise ValueError("out must be a contiguous [nb, b, b] tensor of theta's dtype")
    bt = min(64, max(16, K.next_pow2(block)))
    grid = (nb, triton.cdiv(block, bt), triton.cdiv(block, bt))
    _launch(K._skew_from_vec_kernel, grid, theta, q, n_free(block), B=block, BT=bt)
    return q


def vec_from_skew_(
    q: torch.Tensor, *, antisymmetrise: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    """[nb, b, b] → [nb, b(b−1)/2]: the upper triangle, or dQ_ij − dQ_ji when antisymmetrise."""
    _check_device(q)
    if q.ndim != 3 or q.shape[1] != q.shape[2]:
        raise ValueError("q must be [nb, b, b]")
    q = q.contiguous()
    nb, block = q.shape[0], q.shape[1]
    rows, cols = _triu(block, q.device)
    nf = n_free(block)
    if out is None:
        out = torch.empty(nb, nf, dtype=q.dtype, device=q.device)
    if out.shape != (nb, nf) or not out.is_contiguous() or out.dtype != q.dtype:
        raise ValueError("out must be a contiguous [nb, b(b-1)/2] tensor of q's dtype")
    bt = 1024
    grid = (nb, triton.cdiv(max(nf, 1), bt))
    _launch(
        K._vec_from_skew_kernel, grid, q, out, rows, cols, nf, B=block, ANTI=antisymmetrise, BT=bt
    )
    return out


class SkewFromVec(torch.autograd.Function):
    """θ → Q = U − Uᵀ; backward dθ = dQ_ij − dQ_ji (one kernel each way)."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        return skew_from_vec_(theta, block)

    @staticmethod
    def backward(ctx, dq: torch.Tensor):  # type: ignore[override]
        return vec_from_skew_(dq, antisymmetrise=True), None


def skew_from_vec(theta: torch.Tensor, block: int) -> torch.Tensor:
    """Differentiable [nb, b(b−1)/2] → skew-symmetric [nb, b, b] through the Triton kernels."""
    return SkewFromVec.apply(theta, block)


def vec_from_skew(q: torch.Tensor) -> torch.Tensor:
    """The packed upper triangle of skew q (the inverse of skew_from_vec)."""
    return vec_from_skew_(q)


# --------------------------------------------------------------------------- Cayley–Neumann


# set once the wide Cayley–Neumann tile was refused (shared memory or registers) on this device
CNP_WIDE_REFUSED: list[bool] = []


def _cnp_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    b2: tuple[float, torch.Tensor] | None = None,
    s_ab: float = 1.0,
    cd: tuple[float, torch.Tensor, torch.Tensor] | None = None,
    adds: tuple[tuple[float, torch.Tensor], ...] = (),
    s_eye: float = 0.0,
    precision: str = "ieee",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """out = s_ab·A·(B + s·B2) + s_cd·C·D + Σ s_i·E_i + s_eye·I on [nb, b, b] fp32 batches."""
    if len(adds) > 3:
        raise ValueError("at most three added terms")
    nb, block, _ = a.shape
    out = torch.empty_like(a) if out is None else out
    e = [t for _, t in adds] + [out] * (3 - len(adds))
    se = [s for s, _ in adds] + [0.0] * (3 - len(adds))
    lowp = precision == "bf16" and not interpreting()
    meta = K.cnp_meta(block, lowp, wide=not CNP_WIDE_REFUSED)
    args = (
        a,
        b,
        b2[1] if b2 else out,
        cd[1] if cd else out,
        cd[2] if cd else out,
        e[0],
        e[1],
        e[2],
        out,
        b2[0] if b2 else 0.0,
        s_ab,
        cd[0] if cd else 0.0,
        se[0],
        se[1],
        se[2],
        s_eye,
    )
    consts = {
        "B": block,
        "HAS_B2": b2 is not None,
        "HAS_CD": cd is not None,
        "N_E": len(adds),
        # bf16 operands take the default (tensor-core) dot; "ieee" is fp32's exact one
        "PREC": "ieee" if precision == "ieee" else "tf32",
        "LOWP": lowp,
    }

    def launch(meta: dict[str, int]) -> None:
        grid = (nb, triton.cdiv(block, meta["BT"]), triton.cdiv(block, meta["BT"]))
        _launch(K._cnp_mm_kernel, grid, *args, **consts, **meta)

    try:
        launch(meta)
    except OutOfResources:  # the wide tile does not fit this device: the 64 tile from now on
        if "num_warps" not in meta:
            raise
        CNP_WIDE_REFUSED.append(True)
        launch(K.cnp_meta(block, lowp, wide=False))
    return out


def _check_q(q: torch.Tensor, precision: str) -> None:
    _check_device(q)
    if q.dtype != torch.float32:
        raise ValueError(f"Q must be float32 (got {q.dtype}): R is computed in fp32")
    if q.ndim != 3 or q.shape[1] != q.shape[2] or not q.is_contiguous():
        raise ValueError("Q must be a contiguous [nb, b, b] batch")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")


def cayley_neumann_fwd(
    q: torch.Tensor, c: float = TAYLOR4, precision: str = "ieee"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, Q²) with R = I + 2Q + 2Q² + Q²·(2Q + c·Q²): two launches."""
    _check_q(q, precision)
    q2 = _cnp_mm(q, q, precision=precision)
    r = _cnp_mm(
        q2,
        q,
        b2=(c / 2.0, q2),
        s_ab=2.0,
        adds=((2.0, q), (2.0, q2)),
        s_eye=1.0,
        precision=precision,
    )
    return r, q2


def cayley_neumann_bwd(
    q: torch.Tensor, q2: torch.Tensor, g: torch.Tensor, c: float = TAYLOR4, precision: str = "ieee"
) -> torch.Tensor:
    """dL/dQ at a skew Q from G = dL/dR: 2G − 2S₁ + 2S₂ − c·S₃ with S_n = Σ_{i+j=n} Qⁱ G Qʲ,
    by S₁ = GQ + QG, S₂ = S₁Q + Q(QG), S₃ = S₂Q + Q²(QG): four launches, sums fused."""
    g = g.contiguous().float()
    qg = _cnp_mm(q, g, precision=precision)
    s1 = _cnp_mm(g, q, adds=((1.0, qg),), precision=precision)
    s2 = _cnp_mm(s1, q, cd=(1.0, q, qg), precision=precision)
    return _cnp_mm(
        s2,
        q,
        s_ab=-c,
        cd=(-c, q2, qg),
        adds=((2.0, g), (-2.0, s1), (2.0, s2)),
        precision=precision,
    )


class CayleyNeumann(torch.autograd.Function):
    """Skew Q [nb, b, b] fp32 → R (Triton forward and backward)."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, c: float, precision: str) -> torch.Tensor:  # type: ignore[override]
        r, q2 = cayley_neumann_fwd(q, c, precision)
        ctx.save_for_backward(q, q2)
        ctx.c, ctx.precision = c, precision
        return r

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        q, q2 = ctx.saved_tensors
        return cayley_neumann_bwd(q, q2, g, ctx.c, ctx.precision), None, None


def cayley_neumann(q: torch.Tensor, c: float = TAYLOR4, precision: str = "ieee") -> torch.Tensor:
    """R = I + 2Q + 2Q² + 2Q³ + c·Q⁴ for a batch of skew-symmetric fp32 Q, differentiable.
    c = 2 (default) is the degree-4 Taylor polynomial of the Cayley transform; see reference."""
    return CayleyNeumann.apply(q.contiguous(), float(c), precision)


# --------------------------------------------------------------------------- block rotation


def _precision_for(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


# why the permutation kernel was refused on this device, if it was (the bench prints it): the
# torch fallback keeps the layer correct, at index_select's speed and one temporary
PERMUTE_FALLBACK: dict[str, str] = {}


def permute_cols_(
    x: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """out[:, c] = x[:, index[c]] (see kernels._permute_cols_kernel); `out` may be x itself
    (in place, no allocation)."""
    _check_device(x)
    if x.ndim != 2 or x.stride(1) != 1:
        raise ValueError("x must be 2-D with unit column stride")
    m, d = x.shape
    _check_perm(index, d, "index")
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if out.shape != x.shape or out.stride(1) != 1 or out.dtype != x.dtype:
        raise ValueError("out must match x's shape and dtype, with unit column stride")
    if m == 0:
        return out
    if not PERMUTE_FALLBACK:
        meta = K.permute_meta(d)
        grid = (triton.cdiv(m, meta["ROWS"]),)
        try:
            _launch(
                K._permute_cols_kernel,
                grid,
                x,
                out,
                index,
                m,
                d,
                x.stride(0),
                out.stride(0),
                **meta,
            )
            return out
        except Exception as exc:  # a Triton that cannot compile tl.gather: stay correct
            if interpreting():
                raise
            PERMUTE_FALLBACK["error"] = repr(exc)[:300]
            warnings.warn(
                f"POET-X permutation kernel refused ({exc!r:.200}); using torch", stacklevel=2
            )
    out.copy_(x.index_select(1, index.long()))  # slow, allocating: the fallback only
    return out


# inverse permutations by the permutation tensor they invert (its id, checked against a weak
# reference and its version counter: a merge rewrites the buffer in place), so that a scatter
# (a gather by the inverse) allocates nothing after its first call
_INVERSES: dict[int, tuple[weakref.ref, int, torch.Tensor]] = {}


def inverse_perm(perm: torch.Tensor) -> torch.Tensor:
    """inv with inv[perm[c]] = c (int32, cached while `perm` lives unchanged)."""
    key = id(perm)
    hit = _INVERSES.get(key)
    if hit is not None and hit[0]() is perm and hit[1] == perm._version:
        return hit[2]
    inv = torch.empty_like(perm)
    inv[perm.long()] = torch.arange(perm.numel(), device=perm.device, dtype=perm.dtype)
    ref = weakref.ref(perm, lambda _r, key=key: _INVERSES.pop(key, None))
    _INVERSES[key] = (ref, perm._version, inv)
    return inv


def _rotate_plain(x: torch.Tensor, blocks: torch.Tensor, out: torch.Tensor) -> None:
    """out[:, k·b + n] = Σ_j x[:, k·b + j]·blocks[k, j, n]; out may be x when the whole block
    is one program's output tile (kernels.rotate_bn)."""
    m = x.shape[0]
    nb, block, _ = blocks.shape
    bn = K.rotate_bn(block)

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(m, meta["BM"]), nb * triton.cdiv(block, bn))

    # 16-bit: the tuned kernel; fp32 (exactness, ieee products): the same kernel, one tile
    tuned = x.dtype != torch.float32
    kernel = K.block_rotate_tuned if tuned else K._block_rotate_kernel
    _launch(
        kernel,
        grid,
        x,
        blocks,
        out,
        m,
        nb,
        x.stride(0),
        out.stride(0),
        blocks.stride(0),
        blocks.stride(1),
        blocks.stride(2),
        B=block,
        UPCAST=interpreting(),
        PREC=_precision_for(x.dtype),
        BN=bn,
        **({} if tuned else K.ROTATE_FP32_META),
    )


def block_rotate_(
    x: torch.Tensor,
    blocks: torch.Tensor,
    gather: torch.Tensor | None = None,
    scatter: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[:, oc(k, n)] = Σ_j x[:, ic(k, j)]·blocks[k, j, n] with ic = gather[k·b + j] (else
    k·b + j) and oc = scatter[k·b + n] (else k·b + n); `blocks` may be any strided view (a
    transpose is free); cast to x's dtype by the caller. `out` may be x itself.

    As launches: gather x into out (a coalesced permutation pass), rotate out in place, permute
    out in place by scatter's inverse. For b ≤ 256 it allocates nothing beyond out (the inverse
    of `scatter` is cached while that tensor lives)."""
    _check_device(x, blocks)
    if x.ndim != 2 or x.stride(1) != 1:
        raise ValueError("x must be 2-D with unit column stride")
    if x.dtype not in _ROTATE_DTYPES or blocks.dtype != x.dtype:
        raise ValueError(
            f"x and blocks must share one of {_ROTATE_DTYPES} (got {x.dtype}, {blocks.dtype})"
        )
    nb, block, block2 = blocks.shape
    m, d = x.shape
    if block != block2 or nb * block != d:
        raise ValueError(f"blocks {tuple(blocks.shape)} do not tile {d} columns")
    _check_perm(gather, d, "gather")
    _check_perm(scatter, d, "scatter")
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if out.shape != x.shape or out.stride(1) != 1 or out.dtype != x.dtype:
        raise ValueError("out must match x's shape and dtype, with unit column stride")
    if m == 0:
        return out
    in_place_ok = K.rotate_bn(block) >= block
    src = x
    if gather is not None:
        src = permute_cols_(x, gather, out=out if in_place_ok else None)
    elif not in_place_ok and x.data_ptr() == out.data_ptr():
        src = x.clone()  # wide blocks: several programs write one block, so never in place
    _rotate_plain(src, blocks, out)
    if scatter is not None:
        permute_cols_(out, inverse_perm(scatter), out=out)
    return out


_GRAD_TARGET_PROGRAMS = 264  # ≈ 2 waves of an H100/H200's 132 SMs


def block_rotate_grad_(
    x: torch.Tensor,
    dy: torch.Tensor,
    nb: int,
    gather_x: torch.Tensor | None = None,
    gather_dy: torch.Tensor | None = None,
) -> torch.Tensor:
    """dB[k, j, n] = Σ_m x[m, ic(k, j)]·dy[m, oc(k, n)] in fp32, [nb, b, b]; a gathered
    operand is permuted into a temporary first (the layer passes operands it permuted once
    for two uses)."""
    _check_device(x, dy)
    if x.shape != dy.shape or x.ndim != 2 or x.stride(1) != 1 or dy.stride(1) != 1:
        raise ValueError("x and dy must be 2-D of one shape with unit column stride")
    if x.dtype != dy.dtype or x.dtype not in _ROTATE_DTYPES:
        raise ValueError("x and dy must share one floating dtype")
    m, d = x.shape
    if nb <= 0 or d % nb:
        raise ValueError(f"{nb} blocks do not tile {d} columns")
    block = d // nb
    _check_perm(gather_x, d, "gather_x")
    _check_perm(gather_dy, d, "gather_dy")
    if gather_x is not None:
        x = permute_cols_(x, gather_x)
    if gather_dy is not None:
        dy = permute_cols_(dy, gather_dy)
    tiles = nb * triton.cdiv(block, 64) ** 2
    split = 1
    if not interpreting():
        split = max(1, min(triton.cdiv(_GRAD_TARGET_PROGRAMS, tiles), triton.cdiv(m, 512)))
    rows_per_split = triton.cdiv(max(m, 1), split)
    part = torch.empty(split, nb, block, block, dtype=torch.float32, device=x.device)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (nb, triton.cdiv(block, meta["BJ"]) * triton.cdiv(block, meta["BN"]), split)

    tuned = x.dtype != torch.float32
    kernel = K.block_rotate_grad_tuned if tuned else K._block_rotate_grad_kernel
    _launch(
        kernel,
        grid,
        x,
        dy,
        part,
        m,
        nb,
        rows_per_split,
        x.stride(0),
        dy.stride(0),
        B=block,
        UPCAST=interpreting(),
        PREC=_precision_for(x.dtype),
        SPLIT=split,
        **({} if tuned else K.ROTATE_GRAD_FP32_META),
    )
    return part[0] if split == 1 else part.sum(0)


# --------------------------------------------------------------------------- the layer


class POETLinearFunction(torch.autograd.Function):
    """y = scatter_out(rot(rot(gather_in(x), P)·W0pᵀ, R)) on a 2-D x; gradients for x and the
    fp32 blocks R, P (W0p is frozen: no weight gradient, no dW GEMM).

    `recompute=False` (fast) saves x and v = h·W0pᵀ; `recompute=True` (mem) saves x only and
    recomputes h and v in backward (one rotation and one GEMM more).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w0p: torch.Tensor,
        r_blocks: torch.Tensor,
        p_blocks: torch.Tensor,
        perm_in: torch.Tensor,
        perm_out: torch.Tensor,
        recompute: bool,
    ) -> torch.Tensor:
        rb = r_blocks.to(x.dtype)
        pb = p_blocks.to(x.dtype)
        h = block_rotate_(x, pb, gather=perm_in)
        v = torch.mm(h, w0p.t())
        del h
        y = block_rotate_(v, rb, scatter=perm_out)
        ctx.recompute = recompute
        ctx.save_for_backward(x, w0p, rb, pb, perm_in, perm_out, *(() if recompute else (v,)))
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        x, w0p, rb, pb, perm_in, perm_out = saved[:6]
        dy = dy.contiguous()
        # each operand permuted once (coalesced passes) and used twice: dy[:, perm_out] by dR
        # and dv, x[:, perm_in] by dP and (mem) the recomputed h
        dyp = permute_cols_(dy, perm_out)
        xp = permute_cols_(x, perm_in)
        # mem: recompute v = rot(x, P)·W0pᵀ (one rotation and one GEMM); fast: saved
        v = torch.mm(block_rotate_(xp, pb), w0p.t()) if ctx.recompute else saved[6]
        nb_out, nb_in = rb.shape[0], pb.shape[0]
        d_r = block_rotate_grad_(v, dyp, nb_out)
        del v
        dv = block_rotate_(dyp, rb.transpose(1, 2), out=dyp)  # in place
        dh = torch.mm(dv, w0p)
        del dv, dyp
        d_p = block_rotate_grad_(xp, dh, nb_in)
        del xp
        dx = None
        if ctx.needs_input_grad[0]:
            dx = block_rotate_(dh, pb.transpose(1, 2), scatter=perm_in, out=dh)  # in place
        return dx, None, d_r, d_p, None, None, None


def poet_linear(
    x: torch.Tensor,
    w0p: torch.Tensor,
    r_blocks: torch.Tensor,
    p_blocks: torch.Tensor,
    perm_in: torch.Tensor,
    perm_out: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    recompute: bool = False,
) -> torch.Tensor:
    """The POET-X layer through the Triton kernels, for x of any leading shape."""
    out_f, in_f = w0p.shape
    if x.shape[-1] != in_f:
        raise ValueError(f"x has {x.shape[-1]} features, the layer takes {in_f}")
    if w0p.dtype != x.dtype:
        raise ValueError(f"x ({x.dtype}) and the base weight ({w0p.dtype}) differ in dtype")
    if (
        r_blocks.shape[0] * r_blocks.shape[1] != out_f
        or p_blocks.shape[0] * p_blocks.shape[1] != in_f
    ):
        raise ValueError("rotation blocks do not tile the layer's dimensions")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, in_f)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    y = POETLinearFunction.apply(
        x2, w0p.contiguous(), r_blocks, p_blocks, perm_in, perm_out, recompute
    )
    y = y.view(*lead, out_f)
    return y if bias is None else y + bias.to(y.dtype)
