"""The quantizer's arithmetic rounding and the DGE's floor-based interval edge give the same bits
as the released kernel's compare ladders they replaced (kept in kernels.py as oracles), on every
threshold and interval edge ± a few ulps, both signs, specials and random values; on the GPU
too, where ``ROUND_BY_HAND`` is off and bf16 goes through cvt.rn."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from kernels.fp4 import kernels as K
from kernels.fp4.launch import activation_for_dw, quantize_rows
from kernels.runtime.testing import generator

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]


@triton.jit
def _both_roundings(s_ptr, new_ptr, old_ptr, new_b_ptr, old_b_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    s = tl.load(s_ptr + offs, mask=mask, other=0.0)
    q = K._round_to_grid(s)
    idx, neg = K._magnitude_index(s)
    g = K._grid_value(idx)
    tl.store(new_ptr + offs, q, mask=mask)
    tl.store(old_ptr + offs, tl.where(neg, -g, g), mask=mask)
    tl.store(new_b_ptr + offs, K._grid_e4m3_bits(q), mask=mask)
    tl.store(old_b_ptr + offs, K._e4m3_bits(idx, neg), mask=mask)


@triton.jit
def _both_dge(x_ptr, new_ptr, old_ptr, n, inv_k, power, clamp, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(new_ptr + offs, K._dge_value(x, inv_k, power, clamp), mask=mask)
    tl.store(old_ptr + offs, K._dge_value_ladder(x, inv_k, power, clamp), mask=mask)


def _around(points: list[float], ulps: int = 3) -> torch.Tensor:
    """Each point and its negation, ± up to `ulps` fp32 ulps, plus specials and random values."""
    base = torch.tensor(points, dtype=torch.float32)
    base = torch.cat((base, -base))
    bits = base.view(torch.int32)[:, None] + torch.arange(-ulps, ulps + 1, dtype=torch.int32)
    near = bits.reshape(-1).view(torch.float32)
    special = torch.tensor(
        [0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-45, -1e-45, 3e38, -3e38]
    )
    rand = (torch.rand(4096, generator=generator("fp4fast")) * 16 - 8).float()
    return torch.cat((near, special, rand)).to(DEVICE)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def test_round_to_grid_equals_the_threshold_ladder() -> None:
    """Grid values (+0 for zero, NaN → 0, ±inf → ±6) and e4m3 bytes bit for bit."""
    thresholds = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 7.0]
    s = _around(thresholds)
    n = s.numel()
    new, old = torch.empty_like(s), torch.empty_like(s)
    nb = torch.empty(n, dtype=torch.uint8, device=DEVICE)
    ob = torch.empty_like(nb)
    _both_roundings[(triton.cdiv(n, 256),)](s, new, old, nb, ob, n, BLOCK=256)
    assert torch.equal(_bits(new), _bits(old))
    assert torch.equal(nb, ob)
    assert not bool(torch.signbit(new[new == 0]).any())  # zero is +0


def test_dge_value_equals_the_interval_ladder() -> None:
    """f′ bit for bit on every interval edge ± 3 ulps, beyond ±6, specials, random values."""
    edges = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.25, 0.75, 2.5, 5.0, 7.0, 100.0]
    x = _around(edges)
    n = x.numel()
    new, old = torch.empty_like(x), torch.empty_like(x)
    for k in (5.0, 3.0):
        _both_dge[(triton.cdiv(n, 256),)](x, new, old, n, 1 / k, 1 / k - 1, 3.0, BLOCK=256)
        assert torch.equal(_bits(new), _bits(old))


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        pytest.param(torch.bfloat16, marks=GPU),
        pytest.param(torch.float16, marks=GPU),
    ],
)
def test_dequantized_output_is_the_cast_of_the_fp32_values(dtype: torch.dtype) -> None:
    """The dequantized values in bf16/fp16 are torch's round-to-nearest-even cast of the fp32
    ones (the GPU's cvt.rn where the interpreter rounds by hand), NVFP4 scales included."""
    x = (torch.randn(33, 300, generator=generator("fp4cast")) * 3).to(DEVICE)
    ints = torch.int16 if dtype != torch.float32 else torch.int32
    for nvfp4 in (False, True):
        got, _, _ = quantize_rows(x.to(dtype), out="dequant", nvfp4=nvfp4)
        want, _, _ = quantize_rows(x.to(dtype).float(), out="dequant", nvfp4=nvfp4)
        assert got.dtype == dtype
        assert torch.equal(got.view(ints), want.to(dtype).view(ints))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_activation_for_dw_is_the_fp32_round_trip(dtype: torch.dtype) -> None:
    """The backward's X̂ (codes × scale, + residual) has the bits of the fp32 formula it replaced,
    over rows whose scales span 2^±40 (fp16 keeps the round trip)."""
    g = generator(f"xhat{dtype}")
    x = torch.randn(24, 200, generator=g) * torch.exp2(torch.linspace(-40, 40, 24))[:, None]
    x = x.to(dtype).to(DEVICE)
    lo, hi = x.float().amin(1) * 0.5, x.float().amax(1) * 0.5
    x8, xs, res = quantize_rows(x, out="e4m3", lo=lo, hi=hi, residual=True)
    for r in (None, res):
        old = (x8.view(torch.float8_e4m3fn).float() * xs[:, None]).to(dtype)
        old = old if r is None else old + r
        got = activation_for_dw(x8, xs, r, dtype)
        ints = torch.int32 if dtype == torch.float32 else torch.int16
        assert got.dtype == dtype
        assert torch.equal(got.view(ints), old.view(ints))
