"""The differentiable gradient estimator (its derivative alone and fused into the dW GEMM) and
the outlier clamping (quantile bounds, clamp, residual, fused into the quantizer)."""

from __future__ import annotations

import pytest
import torch

from kernels.fp4 import dge_derivative, dge_weight_grad, outlier_clamp, quantile_bounds
from kernels.fp4 import reference as R
from kernels.fp4.launch import quantize_rows
from kernels.runtime.testing import (
    assert_close_lowp,
    bf16_ulps_apart,
    generator,
    poisoned,
)

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

# Azure/MS-AMP tests/operators/test_fp4_quantize.py::test_DGE: linspace(-6, 6, 20) in bf16
MSAMP_DGE = [0.2002, 0.4375, 0.6055, 0.2168, 1.8359, 0.2695, 0.3027, 0.2695, 0.2402, 0.5781]
MSAMP_DGE = MSAMP_DGE + MSAMP_DGE[::-1]


def test_dge_matches_the_released_test_vector() -> None:
    """Kernel and reference within one bf16 ulp of MS-AMP's vector (exact here on the CPU)."""
    x = torch.linspace(-6.0, 6.0, 20).to(torch.bfloat16).to(DEVICE)
    want = torch.tensor(MSAMP_DGE, dtype=torch.bfloat16, device=DEVICE)
    for got in (dge_derivative(x), R.dge_derivative_ref(x)):
        assert got.dtype == torch.bfloat16
        assert int(bf16_ulps_apart(got, want).max()) <= 1


def test_dge_closed_form_points() -> None:
    """Hand values of min(|2u/δ − 1|^(1/k−1)/k, 3): at a grid point 1/k = 0.2; at an interval's
    middle the clamp 3.0; above 6 and NaN 0; −7 (below the grid) uses [−6, −4): 2^−0.8/5."""
    x = torch.tensor([0.0, 1.0, 4.0, -6.0, 0.25, 2.5, 5.0, 6.5, float("nan"), -7.0], device=DEVICE)
    want = [0.2, 0.2, 0.2, 0.2, 3.0, 3.0, 3.0, 0.0, 0.0, 2.0**-0.8 / 5]
    for got in (dge_derivative(x), R.dge_derivative_ref(x)):
        torch.testing.assert_close(got.cpu(), torch.tensor(want), rtol=1e-6, atol=0)
    k3 = dge_derivative(torch.tensor([0.125], device=DEVICE), k=3.0)  # t = 0.5, δ = 0.5
    assert k3.item() == pytest.approx(0.5 ** (1 / 3 - 1) / 3, rel=1e-6)


@pytest.mark.parametrize(
    "n", [pytest.param(3001, id="3001"), pytest.param(1 << 24, id="16M", marks=GPU)]
)
def test_dge_kernel_against_reference(n: int) -> None:
    """fp32 within 1e-5 relative (the GPU's exp2/log2 are approximate), bf16 within 1 ulp, every
    element written over poison."""
    g = generator(f"dge{n}")
    x = (torch.rand(n, generator=g) * 14 - 7).to(DEVICE)
    out = poisoned((n,), torch.float32, DEVICE)
    dge_derivative(x, into=out)
    torch.testing.assert_close(out, R.dge_derivative_ref(x), rtol=1e-5, atol=1e-7)
    xb = x.bfloat16()
    assert int(bf16_ulps_apart(dge_derivative(xb), R.dge_derivative_ref(xb)).max()) <= 1


GRAD_SHAPES = [
    pytest.param((37, 45, 29), id="M37-N45-K29"),
    pytest.param((130, 17, 66), id="M130-N17-K66"),
    pytest.param((128, 300, 40), id="M128-N300-K40"),  # M a multiple of 64: the unmasked loop
    pytest.param((8192, 4096, 4096), id="M8192-N4096-K4096", marks=GPU),
    pytest.param((16384, 1376, 512), id="M16384-N1376-K512", marks=GPU),
]


@pytest.mark.parametrize("per_col", [True, False], ids=["sf-per-col", "sf-per-row"])
@pytest.mark.parametrize("shape", GRAD_SHAPES)
def test_fused_dge_weight_grad(shape: tuple[int, int, int], per_col: bool) -> None:
    """dW = (dYᵀ X) ⊙ f′(W·sf) against an fp32 oracle: fp32 inputs to 1e-5 relative; bf16
    inputs by KERNELS.md's rule (torch's bf16 GEMM times the bf16 derivative as the low-precision
    twin); every element written over poison; without the DGE it is the plain product."""
    m, n, k = shape
    g = generator(f"dgegrad{shape}{per_col}")
    dy = torch.randn(m, n, generator=g).to(DEVICE)
    x = torch.randn(m, k, generator=g).to(DEVICE)
    w = (torch.randn(n, k, generator=g) * 0.05).to(DEVICE)
    sf_len = k if per_col else n
    sf = torch.exp2(torch.randint(2, 8, (sf_len,), generator=g).float()).to(DEVICE)
    sf_b = sf.reshape(1, -1) if per_col else sf[:, None]

    def oracle(dy_, x_, w_):
        prod = dy_.double().t() @ x_.double()
        return prod * R.dge_derivative_ref(w_.float() * sf_b).double()

    out = poisoned((n, k), torch.float32, DEVICE)
    dge_weight_grad(dy, x, w, sf, per_col=per_col, into=out)
    ref = oracle(dy, x, w)
    assert float((out.double() - ref).abs().max()) <= 1e-5 * float(ref.abs().max())

    dyb, xb, wb = dy.bfloat16(), x.bfloat16(), w.bfloat16()
    got = dge_weight_grad(dyb, xb, wb, sf, per_col=per_col)
    assert got.dtype == torch.bfloat16
    ref32 = oracle(dyb, xb, wb)
    twin = (dyb.t() @ xb) * R.dge_derivative_ref(wb * sf_b.bfloat16())
    assert_close_lowp(got, ref32, twin)

    plain = dge_weight_grad(dy, x, w, sf, per_col=per_col, use_dge=False)
    full = dy.double().t() @ x.double()
    assert float((plain.double() - full).abs().max()) <= 1e-5 * float(full.abs().max())


def test_weight_grad_refuses_mismatched_shapes() -> None:
    dy, x = torch.randn(8, 5, device=DEVICE), torch.randn(8, 3, device=DEVICE)
    with pytest.raises(ValueError, match="expected"):
        dge_weight_grad(dy, x, torch.randn(3, 5, device=DEVICE), torch.ones(3, device=DEVICE))
    with pytest.raises(ValueError, match="share M"):
        dge_weight_grad(dy, x[:4], torch.randn(5, 3, device=DEVICE), torch.ones(3, device=DEVICE))
    with pytest.raises(ValueError, match="one scale per"):
        dge_weight_grad(dy, x, torch.randn(5, 3, device=DEVICE), torch.ones(4, device=DEVICE))


# ----------------------------------------------------------------- outlier clamping


@pytest.mark.parametrize("alpha", [0.99, 0.9])
@pytest.mark.parametrize("cols", [123, 1000])
def test_quantile_bounds_equal_torch_quantile(cols: int, alpha: float) -> None:
    """Per row and per tensor, the bounds are torch.quantile's (1−α) and α quantiles."""
    g = generator(f"quantile{cols}{alpha}")
    x = (torch.randn(37, cols, generator=g) ** 3).to(DEVICE)
    lo, hi = quantile_bounds(x, alpha, per_row=True)
    torch.testing.assert_close(lo, torch.quantile(x, 1 - alpha, dim=1), rtol=1e-6, atol=0)
    torch.testing.assert_close(hi, torch.quantile(x, alpha, dim=1), rtol=1e-6, atol=0)
    lo, hi = quantile_bounds(x, alpha, per_row=False)
    torch.testing.assert_close(lo[0], torch.quantile(x.flatten(), 1 - alpha), rtol=1e-6, atol=0)
    torch.testing.assert_close(hi[0], torch.quantile(x.flatten(), alpha), rtol=1e-6, atol=0)
    for low in (torch.bfloat16, torch.float16):  # selected in the low dtype, equal to fp32's
        xl = x.to(low)
        lo, hi = quantile_bounds(xl, alpha, per_row=True)
        assert lo.dtype == hi.dtype == torch.float32
        torch.testing.assert_close(
            lo, torch.quantile(xl.float(), 1 - alpha, dim=1), rtol=1e-6, atol=0
        )
        torch.testing.assert_close(hi, torch.quantile(xl.float(), alpha, dim=1), rtol=1e-6, atol=0)


def test_outlier_clamp_keeps_a_sparse_residual() -> None:
    """clamp + residual = x (to fp32 rounding), at most ~2% of a row is clipped, and the clipped
    values are exactly those beyond the bounds."""
    g = generator("occ_sparse")
    x = torch.randn(64, 500, generator=g)
    x[:, ::97] *= 30.0  # planted outliers
    x = x.to(DEVICE)
    clamped, res = outlier_clamp(x, 0.99)
    torch.testing.assert_close(clamped + res, x, rtol=2e-7, atol=0)
    lo, hi = quantile_bounds(x, 0.99)
    outside = (x < lo[:, None]) | (x > hi[:, None])
    assert torch.equal(res != 0, outside)
    assert (outside.sum(1) <= 2 * 5 + 2).all()
    assert float(res.abs().max()) > 10.0  # the planted outliers are what got clipped


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("per_row", [True, False], ids=["row", "tensor"])
def test_fused_clamp_quantize_residual(per_row: bool, dtype: torch.dtype) -> None:
    """The quantizer with bounds: codes and scales bit-exact against the reference applied to
    the clamped values, the residual x − clamp(x) bit-exact (bf16 rounded by hand), every
    element written over poison."""
    g = generator(f"fused_occ{per_row}{dtype}")
    x = torch.randn(29, 301, generator=g)
    x[:, ::50] *= 25.0
    x = x.to(dtype).to(DEVICE)
    lo, hi = quantile_bounds(x, 0.99, per_row=per_row)
    buf = torch.full((29, 301), 0x7F, dtype=torch.uint8, device=DEVICE)
    _, scale, res = quantize_rows(x, out="e4m3", lo=lo, hi=hi, residual=True, into=buf)
    want = R.quantize_groups_ref(x, lo=lo if per_row else lo.expand(29), hi=hi.expand(29))
    got_codes = buf.view(torch.float8_e4m3fn).float()
    assert torch.equal(got_codes * scale[:, None], R.dequantize_codes(want.codes, want.scale))
    assert torch.equal(scale, want.scale)
    xf = x.float()
    clamped = torch.minimum(torch.maximum(xf, lo.reshape(-1, 1)), hi.reshape(-1, 1))
    assert torch.equal(res, (xf - clamped).to(dtype))


def test_clamping_raises_the_fp4_cosine_with_outliers() -> None:
    """An activation with heavy outlier channels: FP4 after clamping (plus the residual) is
    closer to it than FP4 without (the paper's Fig. 4 argument), measured by cosine."""
    g = generator("occ_cosine")
    x = torch.randn(256, 512, generator=g)
    x[:, :4] *= 60.0
    x = x.to(DEVICE)
    cos = torch.nn.functional.cosine_similarity
    direct = R.fake_quantize_ref(x)
    clamped, res = outlier_clamp(x, 0.99)
    with_occ = R.fake_quantize_ref(clamped)
    c_direct = cos(direct.flatten(), x.flatten(), dim=0)
    c_clamped = cos(with_occ.flatten(), x.flatten(), dim=0)
    c_comp = cos((with_occ + res).flatten(), x.flatten(), dim=0)
    assert c_comp > c_direct
    assert c_comp > c_clamped
