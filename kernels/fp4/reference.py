"""Plain-PyTorch FP4 (E2M1) quantization as the released code of arXiv 2501.17116 defines it.

This module is the CPU path and the oracle of every kernel test, so it is written for clarity.
Sources (``Azure/MS-AMP`` commit 9746ea8): ``quantize.cu::quantize_bf16_kernel`` (the grid and its
tie rule), ``meta.py::compute_scaling_factor`` (the power-of-two scale, margin 0),
``quantize.cu::differentiable_quantize_derivative`` (the DGE derivative, k = 5, clamp 3.0) and
``fp4_quantize.py::_apply_quantile_clipping`` (outlier clamping).

Definitions shared with the Triton kernels, bit for bit:

* grid {0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6}; the thresholds between neighbours are 0.25, 0.75,
  1.25, 1.75, 2.5, 3.5, 5; a value on a threshold goes to the larger signed neighbour (+0.25 →
  0.5, −0.25 → 0, −5 → −4), beyond ±6 it saturates, zero is always +0;
* the scale of a group (a row along ``axis``, or a block of ``block`` elements) is sf = 2^e with
  e = ⌊log2(6/amax)⌋ computed exactly from amax's exponent and mantissa (no log rounding),
  clamped to [−126, 126]; amax = 0 gives e = 0; a group holding NaN or ±inf dequantizes to NaN
  (MS-AMP maps them to ±6 silently; we make them loud);
* NVFP4 (blocks of 16): tensor amax g, block scale sb = e4m3(block_amax · (2688/g)/6) rounded to
  nearest even, dequantization multiplier d = sb · (g/2688), scaled value x/d (IEEE division),
  the same grid and tie rule (saturating); sb = 0 gives codes 0;
* codes: the 4-bit E2M1 pattern sign·8 + magnitude index (0..7 for 0, 0.5, 1, 1.5, 2, 3, 4, 6),
  packed two a byte, the even element in the low nibble (torch.float4_e2m1fn_x2's order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Format = Literal["e2m1", "mxfp4", "nvfp4"]

GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
THRESHOLDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
FP4_MAX = 6.0
E4M3_MAX = 448.0
NVFP4_GLOBAL = FP4_MAX * E4M3_MAX  # 2688: the tensor scale maps amax to 6 · 448
# e4m3 bit pattern of each E2M1 magnitude (bias 7): what _scaled_mm reads for a code
E4M3_BITS = (0x00, 0x30, 0x38, 0x3C, 0x40, 0x44, 0x48, 0x4C)
EXP_MIN, EXP_MAX = -126, 126
BLOCK_OF = {"mxfp4": 32, "nvfp4": 16}


def magnitude_index(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index 0..7 into GRID, negative?) of scaled fp32 values under MS-AMP's tie rule."""
    neg = s < 0
    a = s.abs()
    idx = torch.zeros(s.shape, dtype=torch.int32, device=s.device)
    for t in THRESHOLDS:
        idx += torch.where(neg, a > t, a >= t).to(torch.int32)
    return idx, neg & (idx > 0)


def grid_value(idx: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The signed grid value (fp32) of (index, negative?)."""
    grid = torch.tensor(GRID, dtype=torch.float32, device=idx.device)
    v = grid[idx.long()]
    return torch.where(neg, -v, v)


def round_to_grid(s: torch.Tensor) -> torch.Tensor:
    """Nearest E2M1 grid value of scaled values (fp32 in and out): quantize_bf16_kernel."""
    idx, neg = magnitude_index(s.float())
    return grid_value(idx, neg)


def pow2_exponent(amax: torch.Tensor) -> torch.Tensor:
    """e = ⌊log2(6/amax)⌋ (int32) exactly, from amax = m·2^p with m ∈ [1, 2): e = (2 if m ≤ 1.5
    else 1) − p; amax = 0 gives 0; clamped to [−126, 126] so 2^e and 2^−e stay normal fp32."""
    m, p = torch.frexp(amax.float())  # amax = m · 2^p, m ∈ [0.5, 1)
    e = torch.where(m <= 0.75, 2, 1) - (p - 1)
    e = torch.where(amax == 0, torch.zeros_like(e), e)
    return e.clamp(EXP_MIN, EXP_MAX).to(torch.int32)


def e4m3_round(v: torch.Tensor) -> torch.Tensor:
    """fp32 → nearest-even e4m3 value (as fp32), saturating at 448: torch's own cast."""
    return v.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn).float()


def as_groups(x: torch.Tensor, axis: int | None, block: int | None) -> torch.Tensor:
    """x as (groups, group_len) rows: `axis` moved last (None: the whole tensor one row), then
    cut in `block`s."""
    if x.ndim == 0:
        raise ValueError("fp4 quantization needs at least one dimension")
    moved = x.reshape(-1) if axis is None else x.movedim(axis, -1)
    length = moved.shape[-1]
    if length == 0 or x.numel() == 0:
        raise ValueError("fp4 quantization of an empty tensor")
    if block is not None:
        if block < 1 or length % block:
            raise ValueError(f"axis length {length} is not a multiple of block {block}")
        return moved.reshape(-1, block)
    return moved.reshape(-1, length)


def from_groups(rows: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Inverse of as_groups: rows back to x's shape (axis in place)."""
    if axis is None:
        return rows.reshape(x.shape)
    moved_shape = x.movedim(axis, -1).shape
    return rows.reshape(moved_shape).movedim(-1, axis)


@dataclass(frozen=True)
class Quantized:
    """FP4 codes of a tensor viewed as groups: codes (groups, len) uint8 E2M1 patterns, and the
    fp32 dequantization multiplier of each group (NaN for a group holding NaN/inf)."""

    codes: torch.Tensor
    scale: torch.Tensor
    block_scale: torch.Tensor | None = None  # NVFP4's e4m3 block scale sb (scale = sb · g/2688)


def quantize_groups_ref(
    rows: torch.Tensor,
    fmt: Format = "e2m1",
    *,
    lo: torch.Tensor | None = None,
    hi: torch.Tensor | None = None,
) -> Quantized:
    """Quantize each row of `rows` (groups × len) with its own scale; `lo`/`hi` (per row or one
    value) clamp first (outlier clamping). NVFP4 takes its tensor amax over all rows."""
    x = rows.float()
    if lo is not None and hi is not None:
        x = torch.minimum(torch.maximum(x, lo.float().reshape(-1, 1)), hi.float().reshape(-1, 1))
    bad = (~torch.isfinite(x)).any(dim=1)
    amax = torch.where(torch.isfinite(x), x.abs(), torch.zeros_like(x)).amax(dim=1)
    if fmt == "nvfp4":
        g = amax.max()
        enc6 = torch.where(g > 0, NVFP4_GLOBAL / g, torch.ones_like(g)) / FP4_MAX
        dec_t = g / NVFP4_GLOBAL
        sb = e4m3_round(amax * enc6)
        d = sb * dec_t
        s = torch.where(d[:, None] > 0, x / d[:, None], torch.zeros_like(x))
        scale = d
        block_scale = torch.where(bad, torch.full_like(sb, float("nan")), sb)
    else:
        block_scale = None
        e = pow2_exponent(amax)
        sf = torch.ldexp(torch.ones_like(amax), e)
        s = x * sf[:, None]
        scale = torch.ldexp(torch.ones_like(amax), -e)
    idx, neg = magnitude_index(s)
    codes = (idx + 8 * neg.to(torch.int32)).to(torch.uint8)
    scale = torch.where(bad, torch.full_like(scale, float("nan")), scale)
    return Quantized(codes=codes, scale=scale, block_scale=block_scale)


def dequantize_codes(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 values of (groups, len) codes times their group's multiplier."""
    c = codes.to(torch.int32)
    return grid_value(c & 7, (c & 8) > 0) * scale.reshape(-1, 1)


def fake_quantize_ref(
    x: torch.Tensor,
    *,
    axis: int | None = -1,
    block: int | None = None,
    fmt: Format = "e2m1",
) -> torch.Tensor:
    """x quantized to FP4 and dequantized again, in x's dtype (the simulated FP4 tensor)."""
    if fmt != "e2m1":
        block = BLOCK_OF[fmt] if block is None else block
    rows = as_groups(x, axis, block)
    q = quantize_groups_ref(rows, fmt)
    return from_groups(dequantize_codes(q.codes, q.scale).to(x.dtype), x, axis)


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """(…, 2n) codes → (…, n) bytes: even element in the low nibble."""
    if codes.shape[-1] % 2:
        raise ValueError("packing needs an even number of codes per row")
    c = codes.to(torch.uint8)
    return c[..., 0::2] | (c[..., 1::2] << 4)


def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_codes."""
    lo = packed & 0x0F
    hi = packed >> 4
    return torch.stack((lo, hi), dim=-1).reshape(*packed.shape[:-1], -1)


def e8m0_bits(scale: torch.Tensor) -> torch.Tensor:
    """The E8M0 byte (biased exponent, bias 127) of power-of-two multipliers; 0xFF for NaN."""
    _, p = torch.frexp(scale)
    bits = (p - 1 + 127).clamp(0, 254).to(torch.uint8)
    return torch.where(torch.isnan(scale), torch.full_like(bits, 0xFF), bits)


# ---------------------------------------------------------------- differentiable gradient estimator

DGE_LEFT = (-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
DGE_WIDTH = (2.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 2.0)


def dge_derivative_ref(x: torch.Tensor, k: float = 5.0, clamp: float = 3.0) -> torch.Tensor:
    """f′(x) of the DGE on already-scaled values (fp32 math, x's dtype out).

    Inside the grid interval [left, left+δ) holding x, with u = x − left:
    f′ = min(|2u/δ − 1|^(1/k − 1) / k, clamp). As in the released kernel, x < −4 (also < −6)
    uses the first interval, x in [4, 6] the last, and x > 6 or NaN gives 0.
    """
    xf = x.float()
    left = torch.tensor(DGE_LEFT, dtype=torch.float32, device=x.device)
    width = torch.tensor(DGE_WIDTH, dtype=torch.float32, device=x.device)
    i = (xf[..., None] >= left[1:]).sum(-1)
    u = xf - left[i]
    term = (2.0 * u / width[i] - 1.0).abs()
    dy = torch.minimum(term.pow(1.0 / k - 1.0) / k, torch.tensor(clamp, device=x.device))
    dy = torch.where((xf <= 6.0) & ~torch.isnan(xf), dy, torch.zeros_like(dy))
    return dy.to(x.dtype)


# ---------------------------------------------------------------- outlier clamping


def quantile_bounds_ref(
    rows: torch.Tensor, alpha: float = 0.99, per_row: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) fp32: the (1−α)- and α-quantiles (torch.quantile's linear interpolation) of each
    row, or of the whole tensor (shape (1,)) when per_row is False."""
    x = rows.float() if per_row else rows.float().reshape(1, -1)
    q = torch.tensor([1.0 - alpha, alpha], dtype=torch.float32, device=x.device)
    b = torch.quantile(x, q, dim=1)
    return b[0], b[1]
