"""Host launchers of the FP4 kernels and the FP4 linear layer's autograd function.

Each public function runs the Triton kernel when the tensor's device can take one (CUDA, or the
CPU under ``TRITON_INTERPRET=1``) and the plain-PyTorch reference otherwise (``use_kernels``
forces either). The FP4 GEMM itself is ``torch._scaled_mm`` on e4m3 operands (every E2M1 value
is exact in e4m3) with the FP4 scales as its row/column scales: Hopper has no FP4 tensor cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from kernels.fp4 import kernels as K
from kernels.fp4 import reference as R
from kernels.runtime.device import interpreting, kernels_run_on

Out = Literal["dequant", "e4m3", "packed"]
_OUT_MODE = {"dequant": K.OUT_DEQUANT, "e4m3": K.OUT_E4M3, "packed": K.OUT_PACKED}
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _kernels_for(t: torch.Tensor, use_kernels: bool | None) -> bool:
    """Whether to launch Triton for `t`: by default when its device can run a kernel."""
    able = kernels_run_on(t.device)
    if use_kernels and not able:
        raise RuntimeError(
            f"FP4 kernels cannot run on {t.device} (CUDA, or the CPU with TRITON_INTERPRET=1)"
        )
    return able if use_kernels is None else bool(use_kernels)


def _check_float(t: torch.Tensor, what: str) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{what} must be fp32, bf16 or fp16, not {t.dtype}")


def nvfp4_tensor_scales(rows: torch.Tensor) -> torch.Tensor:
    """[enc/6, g/2688] (fp32) of NVFP4 for a tensor whose finite amax is g (reference's math)."""
    x = rows.float()
    g = torch.where(torch.isfinite(x), x.abs(), torch.zeros_like(x)).amax()
    enc6 = torch.where(g > 0, R.NVFP4_GLOBAL / g, torch.ones_like(g)) / R.FP4_MAX
    return torch.stack((enc6, g / R.NVFP4_GLOBAL))


def quantize_rows(
    rows: torch.Tensor,
    *,
    out: Out = "dequant",
    nvfp4: bool = False,
    out_dtype: torch.dtype | None = None,
    lo: torch.Tensor | None = None,
    hi: torch.Tensor | None = None,
    residual: bool = False,
    max_block_n: int = K.MAX_BLOCK_N,
    into: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One Triton launch over a (groups, len) tensor: (values | e4m3 bytes | packed codes, the
    per-group multiplier, x − clamp(x) or None). `lo`/`hi` are per-row (groups,) or one-element
    fp32 bounds. For NVFP4 the multiplier is the e4m3 block scale (times g/2688 dequantizes).
    `into` is an optional buffer for the values (tests poison it)."""
    if rows.ndim != 2:
        raise ValueError("quantize_rows takes a (groups, len) tensor")
    _check_float(rows, "the input")
    rows = rows.contiguous()
    n_rows, row_len = rows.shape
    if n_rows == 0 or row_len == 0:
        raise ValueError("fp4 quantization of an empty tensor")
    if (lo is None) != (hi is None):
        raise ValueError("give both clamp bounds or neither")
    if nvfp4 and lo is not None:
        raise ValueError("outlier clamping is not combined with NVFP4 scaling")
    if residual and lo is None:
        raise ValueError("a residual needs clamp bounds")
    if out == "packed" and row_len % 2:
        raise ValueError(f"packing needs an even group length, not {row_len}")
    dev = rows.device
    if out == "dequant":
        values = torch.empty_like(rows, dtype=out_dtype or rows.dtype)
    elif out == "e4m3":
        values = torch.empty((n_rows, row_len), dtype=torch.uint8, device=dev)
    else:
        values = torch.empty((n_rows, row_len // 2), dtype=torch.uint8, device=dev)
    if into is not None:
        if into.shape != values.shape or into.dtype != values.dtype or not into.is_contiguous():
            raise ValueError(f"`into` must be a contiguous {values.dtype} {tuple(values.shape)}")
        values = into
    scale = torch.empty(n_rows, dtype=torch.float32, device=dev)
    res = torch.empty_like(rows) if residual else scale
    clamp = K.CLAMP_NONE
    if lo is not None:
        lo = lo.float().contiguous().reshape(-1)
        hi = hi.float().contiguous().reshape(-1)
        if lo.numel() == n_rows and hi.numel() == n_rows:
            clamp = K.CLAMP_PER_ROW
        elif lo.numel() == 1 and hi.numel() == 1:
            clamp = K.CLAMP_TENSOR
        else:
            raise ValueError("clamp bounds must hold one value, or one per row")
    else:
        lo = hi = scale
    nv = nvfp4_tensor_scales(rows) if nvfp4 else scale
    block_m, block_n, warps = K.quantize_tile(row_len, max_block_n)
    grid = (triton_cdiv(n_rows, block_m),)
    K._fp4_quantize_kernel[grid](
        rows, values, scale, res, lo, hi, nv, n_rows, row_len,
        OUT_MODE=_OUT_MODE[out], SCALE_MODE=K.SCALE_NVFP4 if nvfp4 else K.SCALE_POW2,
        CLAMP=clamp, WRITE_RES=residual, SINGLE_PASS=row_len <= block_n,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps,
    )  # fmt: skip
    return values, scale, (res if residual else None)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class FP4Tensor:
    """A tensor in packed FP4: `packed` (groups, len/2) bytes of E2M1 codes, `scale` the fp32
    multiplier of each group, `scale_bits` its stored byte (E8M0 for power-of-two scales, e4m3
    for NVFP4), `tensor_scale` NVFP4's fp32 g/2688 (None otherwise), and what undoes the view."""

    packed: torch.Tensor
    scale: torch.Tensor
    scale_bits: torch.Tensor
    tensor_scale: torch.Tensor | None
    shape: tuple[int, ...]
    axis: int | None
    block: int | None
    fmt: R.Format
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of codes and stored scales (the memory an FP4 tensor needs)."""
        extra = 4 if self.tensor_scale is not None else 0
        return self.packed.numel() + self.scale_bits.numel() + extra


def _block_for(fmt: R.Format, block: int | None) -> int | None:
    if fmt not in ("e2m1", "mxfp4", "nvfp4"):
        raise ValueError(f"unknown FP4 format {fmt!r}")
    if fmt != "e2m1" and block not in (None, R.BLOCK_OF[fmt]):
        raise ValueError(f"{fmt} uses blocks of {R.BLOCK_OF[fmt]}")
    return R.BLOCK_OF[fmt] if fmt != "e2m1" else block


def fake_quantize(
    x: torch.Tensor,
    *,
    axis: int | None = -1,
    block: int | None = None,
    fmt: R.Format = "e2m1",
    use_kernels: bool | None = None,
) -> torch.Tensor:
    """x through FP4 and back, in x's dtype: one scale per row along `axis` (None: the whole
    tensor), or per `block` elements along it; ``fmt`` "mxfp4" (blocks of 32, E8M0 scale) or
    "nvfp4" (blocks of 16, e4m3 scale × fp32 tensor scale)."""
    _check_float(x, "the input")
    block = _block_for(fmt, block)
    if not _kernels_for(x, use_kernels):
        return R.fake_quantize_ref(x, axis=axis, block=block, fmt=fmt)
    rows = R.as_groups(x, axis, block)
    values, _, _ = quantize_rows(rows, out="dequant", nvfp4=fmt == "nvfp4")
    return R.from_groups(values, x, axis)


def quantize(
    x: torch.Tensor,
    *,
    axis: int | None = -1,
    block: int | None = None,
    fmt: R.Format = "e2m1",
    use_kernels: bool | None = None,
) -> FP4Tensor:
    """x in packed FP4 (two codes a byte plus scales); see fake_quantize for the arguments."""
    _check_float(x, "the input")
    block = _block_for(fmt, block)
    rows = R.as_groups(x, axis, block)
    nv = fmt == "nvfp4"
    if _kernels_for(x, use_kernels):
        packed, stored, _ = quantize_rows(rows, out="packed", nvfp4=nv)
    else:
        q = R.quantize_groups_ref(rows, "nvfp4" if nv else "e2m1")
        packed = R.pack_codes(q.codes)
        stored = q.block_scale if nv else q.scale
    if nv:
        tensor_scale = nvfp4_tensor_scales(rows)[1]
        bits = stored.to(torch.float8_e4m3fn).view(torch.uint8)
        scale = stored * tensor_scale
    else:
        tensor_scale = None
        bits = R.e8m0_bits(stored)
        scale = stored
    return FP4Tensor(packed, scale, bits, tensor_scale, tuple(x.shape), axis, block, fmt, x.dtype)


def dequantize(q: FP4Tensor) -> torch.Tensor:
    """The tensor an FP4Tensor stands for, in its original dtype and shape."""
    values = R.dequantize_codes(R.unpack_codes(q.packed), q.scale).to(q.dtype)
    like = torch.empty(q.shape, device="meta")
    moved = like.reshape(-1) if q.axis is None else like.movedim(q.axis, -1)
    out = values.reshape(moved.shape)
    return out.reshape(q.shape) if q.axis is None else out.movedim(-1, q.axis)


def dge_derivative(
    x: torch.Tensor,
    k: float = 5.0,
    clamp: float = 3.0,
    *,
    use_kernels: bool | None = None,
    into: torch.Tensor | None = None,
) -> torch.Tensor:
    """The DGE's f′ of already-scaled values (x's dtype): see reference.dge_derivative_ref."""
    _check_float(x, "the input")
    if not k > 1:
        raise ValueError("k must be > 1 (k = 1 is the identity; the paper takes 5)")
    if not _kernels_for(x, use_kernels):
        return R.dge_derivative_ref(x, k, clamp)
    flat = x.contiguous().reshape(-1)
    out = torch.empty_like(flat) if into is None else into.reshape(-1)
    block = 1024
    K._dge_kernel[(triton_cdiv(flat.numel(), block),)](
        flat, out, flat.numel(), 1.0 / k, 1.0 / k - 1.0, clamp, BLOCK=block
    )
    return out.reshape(x.shape)


def dge_weight_grad(
    dy: torch.Tensor,
    x: torch.Tensor,
    w: torch.Tensor,
    sf: torch.Tensor,
    *,
    per_col: bool = True,
    use_dge: bool = True,
    k: float = 5.0,
    clamp: float = 3.0,
    out_dtype: torch.dtype | None = None,
    use_kernels: bool | None = None,
    into: torch.Tensor | None = None,
) -> torch.Tensor:
    """dW = dYᵀ X (dY (M, N), X (M, K)) times f′(W·sf) (W (N, K), sf per column k when
    `per_col`, else per row n) in one fused GEMM; fp32 accumulation, W's dtype out."""
    if dy.ndim != 2 or x.ndim != 2 or dy.shape[0] != x.shape[0]:
        raise ValueError(f"dY {tuple(dy.shape)} and X {tuple(x.shape)} do not share M")
    m, n = dy.shape
    kk = x.shape[1]
    if w.shape != (n, kk):
        raise ValueError(f"W is {tuple(w.shape)}, expected {(n, kk)}")
    if sf.numel() != (kk if per_col else n):
        raise ValueError("sf must hold one scale per column (per_col) or per row of W")
    if dy.dtype != x.dtype:
        raise TypeError(f"dY ({dy.dtype}) and X ({x.dtype}) must share a dtype")
    if use_dge and not k > 1:
        raise ValueError("k must be > 1 (k = 1 is the identity; the paper takes 5)")
    out_dtype = out_dtype or w.dtype
    if not _kernels_for(dy, use_kernels):
        dw = dy.float().t() @ x.float()
        if use_dge:
            scaled = w.float() * (sf.float().reshape(1, -1) if per_col else sf.float()[:, None])
            dw = dw * R.dge_derivative_ref(scaled, k, clamp)
        return dw.to(out_dtype)
    out = torch.empty((n, kk), dtype=out_dtype, device=dy.device) if into is None else into
    dot_f32 = interpreting() or dy.dtype == torch.float32

    def grid(meta: dict) -> tuple[int]:
        return (triton_cdiv(n, meta["BLOCK_N"]) * triton_cdiv(kk, meta["BLOCK_K"]),)

    K._dge_weight_grad_kernel[grid](
        dy.contiguous(), x.contiguous(), w.contiguous(), sf.float().contiguous(), out,
        m, n, kk, 1.0 / k, 1.0 / k - 1.0, clamp,
        SF_PER_COL=per_col, USE_DGE=use_dge, DOT_F32=dot_f32, EVEN_M=m % 64 == 0,
    )  # fmt: skip
    return out


def quantile_bounds(
    rows: torch.Tensor, alpha: float = 0.99, per_row: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) fp32: the (1−α)- and α-quantiles of each row (or of the whole tensor, shape
    (1,)), by torch.quantile's rule (rank q·(n−1) in fp32, linear interpolation between the two
    order statistics around it). Each bound takes one top-k of the ~(1−α)·n values beyond it
    (a radix select on CUDA): no sort, no host sync, no 2^24-element limit. The selection runs
    on the input's own dtype (bf16/fp16 widen to fp32 exactly: the same order statistics without
    an fp32 copy of the tensor); only the picked values go to fp32 for the interpolation."""
    if not 0.5 < alpha < 1.0:
        raise ValueError("alpha must be in (0.5, 1)")
    x = rows if per_row else rows.reshape(1, -1)
    n = x.shape[1]
    bounds = []
    for q, largest in ((1.0 - alpha, False), (alpha, True)):
        rank = np.float32(q) * np.float32(n - 1)  # torch.quantile computes the rank in fp32
        below = int(np.floor(rank))
        above = min(below + 1, n - 1)
        weight = float(rank - np.float32(below))
        # ascending rank j sits at position j of the smallest-first top-k, n−1−j of the largest
        pos_below, pos_above = (n - 1 - below, n - 1 - above) if largest else (below, above)
        k = max(pos_below, pos_above) + 1
        top = torch.topk(x, k, dim=1, largest=largest, sorted=True).values
        bounds.append(torch.lerp(top[:, pos_below].float(), top[:, pos_above].float(), weight))
    return bounds[0], bounds[1]


def outlier_clamp(
    x: torch.Tensor, alpha: float = 0.99, per_row: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clamp(x) to its α-quantile bounds, the sparse residual x − clamp(x)), in x's dtype;
    rows are x's last dimension."""
    rows = x.reshape(-1, x.shape[-1])
    lo, hi = quantile_bounds(rows, alpha, per_row)
    xf = rows.float()
    clamped = torch.minimum(torch.maximum(xf, lo[:, None]), hi[:, None])
    return clamped.to(x.dtype).reshape(x.shape), (xf - clamped).to(x.dtype).reshape(x.shape)


# ------------------------------------------------------------------------------ FP4 linear


@dataclass(frozen=True)
class FP4Config:
    """How an FP4 linear layer quantizes. The paper's FP4 training: activations token-wise with
    outlier clamping at α = 0.99 and compensation, weights channel-wise (amax over dim 0 of the
    [out, in] weight, as the released code) with the DGE (k = 5, clamp 3) in backward."""

    weight_axis: int = 0  # 0: the paper's amax over dim 0 of [out, in]; 1: per output row
    dge: bool = True
    k: float = 5.0
    dge_clamp: float = 3.0
    clamp: Literal["none", "row", "tensor"] = "row"
    alpha: float = 0.99
    compensate: bool = True

    def __post_init__(self) -> None:
        if self.weight_axis not in (0, 1):
            raise ValueError("weight_axis is 0 (over output rows, the paper's) or 1")
        if self.clamp not in ("none", "row", "tensor"):
            raise ValueError(f"clamp is 'none', 'row' or 'tensor', not {self.clamp!r}")
        if not self.k > 1:
            raise ValueError("k must be > 1 (k = 1 is the identity; the paper takes 5)")
        if self.compensate and self.clamp == "none":
            raise ValueError("compensation needs outlier clamping")


FP4_FULL = FP4Config()
FP4_DIRECT = FP4Config(dge=False, clamp="none", compensate=False)


def _pad_to(t: torch.Tensor, rows: int, cols: int, value: float = 0) -> torch.Tensor:
    r, c = t.shape
    if (r, c) == (rows, cols):
        return t
    return F.pad(t, (0, cols - c, 0, rows - r), value=value)


def fp8_scaled_mm(
    a8: torch.Tensor, sa: torch.Tensor, b8: torch.Tensor, sb: torch.Tensor
) -> torch.Tensor:
    """(a8 · diag-scaled) @ (b8 · diag-scaled)ᵀ in bf16: a8 (M, K), b8 (N, K) e4m3 bytes,
    sa (M,), sb (N,) fp32 — torch._scaled_mm with row-wise scales, dimensions padded with
    zeros to multiples of 16 (cuBLASLt's rule) and cut back."""
    m, kk = a8.shape
    n = b8.shape[0]
    mp, kp, np_ = (-(-d // 16) * 16 for d in (m, kk, n))
    a = _pad_to(a8, mp, kp).view(torch.float8_e4m3fn)
    b = _pad_to(b8, np_, kp).view(torch.float8_e4m3fn)
    scale_a = _pad_to(sa.float().reshape(-1, 1), mp, 1, 1.0).contiguous()
    scale_b = _pad_to(sb.float().reshape(1, -1), 1, np_, 1.0).contiguous()
    y = torch._scaled_mm(a, b.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)
    return y[:m, :n]


@dataclass
class QuantizedWeight:
    """A weight ready for the FP8 GEMM: e4m3 bytes (N, K), their per-row multiplier (N,), the
    dequantized FP4 weight (for dX) and the quantizer's scale sf (for the DGE)."""

    bytes8: torch.Tensor
    row_scale: torch.Tensor
    dequant: torch.Tensor
    sf: torch.Tensor


def quantize_weight(w: torch.Tensor, weight_axis: int, use_kernels: bool) -> QuantizedWeight:
    """FP4 weight for _scaled_mm. Per output row (axis 1): the codes are the e4m3 bytes and the
    row multipliers the GEMM's column scales. The paper's axis 0 scales along the GEMM's
    reduction axis, which no GEMM scale can factor out: the dequantized FP4 weight goes to e4m3
    with one power-of-two tensor scale, 2^−6 × the largest column multiplier (exact for columns
    whose multiplier is within 2^13 of the largest; values of smaller ones round to nearest)."""
    if weight_axis == 1:
        if use_kernels:
            b8, mult, _ = quantize_rows(w, out="e4m3")
        else:
            q = R.quantize_groups_ref(w)
            b8 = _codes_to_e4m3(q.codes)
            mult = q.scale
        deq = _e4m3_to_float(b8) * mult[:, None]
        return QuantizedWeight(b8, mult, deq.to(w.dtype), torch.reciprocal(mult))
    wt = w.t()
    if use_kernels:
        deq_t, mult, _ = quantize_rows(wt.contiguous(), out="dequant", out_dtype=torch.float32)
    else:
        q = R.quantize_groups_ref(wt)
        deq_t, mult = R.dequantize_codes(q.codes, q.scale), q.scale
    deq = deq_t.t()
    # every multiplier is a power of two: t = max · 2^−6 is one too, and |deq|/t ≤ 6·2^6 = 384
    t = mult.amax() * 2.0**-6
    b8 = (deq / t).to(torch.float8_e4m3fn).view(torch.uint8).contiguous()
    row_scale = t.expand(w.shape[0]).contiguous()
    return QuantizedWeight(b8, row_scale, deq.to(w.dtype), torch.reciprocal(mult))


def _codes_to_e4m3(codes: torch.Tensor) -> torch.Tensor:
    table = torch.tensor(R.E4M3_BITS, dtype=torch.uint8, device=codes.device)
    c = codes.long()
    return table[c & 7] | ((c & 8) << 4).to(torch.uint8)


def _e4m3_to_float(b8: torch.Tensor) -> torch.Tensor:
    return b8.view(torch.float8_e4m3fn).float()


def activation_for_dw(
    x8: torch.Tensor, xs: torch.Tensor, res: torch.Tensor | None, dt: torch.dtype
) -> torch.Tensor:
    """X̂ = e4m3 codes × row scale (+ the residual) in dt: what the forward multiplied. A grid
    value times a power-of-two scale is exact in bf16/fp32, so one fused op (the residual added
    with one rounding) replaces the fp32 round trip; fp16 keeps it (the scale may leave its
    range where the product does not)."""
    if dt == torch.float16:
        xq = (_e4m3_to_float(x8) * xs[:, None]).to(dt)
        return xq if res is None else xq + res
    codes = x8.view(torch.float8_e4m3fn).to(dt)
    scale = xs[:, None].to(dt)
    return codes * scale if res is None else torch.addcmul(res, codes, scale)


class FP4LinearFunction(torch.autograd.Function):
    """y = Q(clamp(x)) Q(W)ᵀ [+ (x − clamp(x)) Wᵀ] + b, the FP4 GEMM through FP8.

    Backward: dX = dY Q(W) (straight through the quantizers and the clamp); dW = dYᵀ X̂ with X̂
    the activation the forward multiplied (quantized, plus the residual), times f′(W·sf) when
    the DGE is on (fused into the dW GEMM's epilogue on kernel devices).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, cfg: FP4Config, use_kernels: bool):
        dt = x.dtype
        x2 = x.reshape(-1, x.shape[-1])
        lo = hi = None
        if cfg.clamp != "none":
            lo, hi = quantile_bounds(x2, cfg.alpha, per_row=cfg.clamp == "row")
        if use_kernels:
            x8, xs, res = quantize_rows(x2, out="e4m3", lo=lo, hi=hi, residual=cfg.compensate)
        else:
            q = R.quantize_groups_ref(x2, lo=lo, hi=hi)
            x8, xs = _codes_to_e4m3(q.codes), q.scale
            res = None
            if cfg.compensate:
                xf = x2.float()
                clamped = torch.minimum(torch.maximum(xf, lo[:, None]), hi[:, None])
                res = (xf - clamped).to(dt)
        qw = quantize_weight(weight, cfg.weight_axis, use_kernels)
        y = fp8_scaled_mm(x8, xs, qw.bytes8, qw.row_scale).to(dt)
        if res is not None:
            y = y + res @ weight.t()
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x8, xs, res, weight, qw.dequant, qw.sf)
        ctx.cfg, ctx.use_kernels, ctx.has_bias, ctx.x_shape = (
            cfg,
            use_kernels,
            bias is not None,
            x.shape,
        )
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x8, xs, res, weight, w_deq, sf = ctx.saved_tensors
        cfg = ctx.cfg
        dt = weight.dtype
        dy2 = dy.reshape(-1, dy.shape[-1]).to(dt)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (dy2 @ w_deq).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            xq = activation_for_dw(x8, xs, res, dt)
            if cfg.dge:
                dw = dge_weight_grad(
                    dy2.contiguous(), xq, weight, sf, per_col=cfg.weight_axis == 0,
                    k=cfg.k, clamp=cfg.dge_clamp, use_kernels=ctx.use_kernels,
                )  # fmt: skip
            else:
                dw = dy2.t() @ xq
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dx, dw, db, None, None


def fp4_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    cfg: FP4Config = FP4_FULL,
    *,
    use_kernels: bool | None = None,
) -> torch.Tensor:
    """F.linear with FP4 activations and weights (see FP4LinearFunction); x and the weight must
    share a dtype (the layer casts them to the autocast dtype first)."""
    if x.dtype != weight.dtype:
        raise TypeError(f"x ({x.dtype}) and the weight ({weight.dtype}) must share a dtype")
    _check_float(x, "the input")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features, the weight takes {weight.shape[1]}")
    return FP4LinearFunction.apply(x, weight, bias, cfg, _kernels_for(x, use_kernels))
