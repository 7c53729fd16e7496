"""The FP4 quantizer: the released code's test vectors, its tie rule, the exact power-of-two
scale, odd shapes bit-exact against the reference, packed codes, MXFP4 / NVFP4, NaN and inf.

Small odd shapes run through Triton's CPU interpreter (CI); the ``gpu`` cases at real sizes.
"""

from __future__ import annotations

import math

import pytest
import torch

from kernels.fp4 import dequantize, fake_quantize, quantize
from kernels.fp4 import reference as R
from kernels.fp4.launch import quantize_rows
from kernels.runtime.device import interpreting
from kernels.runtime.testing import generator, poisoned

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype, NaN positions and bit pattern elsewhere (−0 differs from +0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.is_floating_point:
        nan = torch.isnan(a.float())
        if not torch.equal(nan, torch.isnan(b.float())):
            return False
        a, b = a[~nan], b[~nan]
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[a.element_size()]
    return torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def _rows_with_spread(shape: tuple[int, ...], name: str, dtype: torch.dtype) -> torch.Tensor:
    """Normal values whose rows differ in scale by up to 2^±12 (2^±6 in fp16), a few outliers
    and exact zeros."""
    g = generator(name)
    x = torch.randn(shape, generator=g)
    span = 6 if dtype == torch.float16 else 12
    x = x * torch.exp2(torch.randint(-span, span + 1, (*shape[:-1], 1), generator=g).float())
    x.view(-1)[:: max(1, x.numel() // 7)] *= 40.0
    x.view(-1)[3 :: max(1, x.numel() // 11)] = 0.0
    return x.to(dtype).to(DEVICE)


# ----------------------------------------------------------------- the released code's vectors


def test_msamp_vectors_tensor_wise_and_channel_wise() -> None:
    """tests/operators/test_fp4_quantize.py of Azure/MS-AMP (commit 9746ea8), bit for bit."""
    x = torch.tensor(
        [[[0.001, 0.048, 0.0997], [0.1503, 0.2002, 0.2497], [0.2974, 0.30699, 0.4001]]],
        dtype=torch.bfloat16,
    ).to(DEVICE)
    want = torch.tensor(
        [[[0.0, 0.0625, 0.125], [0.125, 0.1875, 0.25], [0.25, 0.25, 0.375]]],
        dtype=torch.bfloat16,
    ).to(DEVICE)
    assert _bits_equal(fake_quantize(x, axis=None), want)
    assert _bits_equal(R.fake_quantize_ref(x, axis=None), want)

    x = torch.tensor(
        [
            [[-0.01, 0.48, -9.67], [1.623, -2.222, 24.67]],
            [[-2.874, 3.699, -34.57], [0.85, -1.343, 18.88]],
        ],
        dtype=torch.bfloat16,
    ).to(DEVICE)
    want = torch.tensor(
        [[[0.0, 0.5, -8.0], [1.5, -2.0, 24.0]], [[-3.0, 4.0, -32.0], [0.75, -1.5, 16.0]]],
        dtype=torch.bfloat16,
    ).to(DEVICE)
    # channel-wise: amax over dim 0 of the (tokens, channels) view
    got = fake_quantize(x.reshape(-1, 3), axis=0).reshape(2, 2, 3)
    assert _bits_equal(got, want)
    # token-wise on the transpose gives the transpose
    got = fake_quantize(x.reshape(-1, 3).T.contiguous(), axis=-1)
    assert _bits_equal(got, want.reshape(-1, 3).T.contiguous())


def test_ties_go_to_the_larger_signed_neighbour() -> None:
    """With amax 6 (scale 1), every threshold lands on the neighbour above it: +0.25 → 0.5,
    −0.25 → 0, −5 → −4, +5 → 6; beyond ±6 is impossible (6 is the amax)."""
    thresholds = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    row = [6.0, *thresholds, *(-t for t in thresholds), -6.0, 0.0, -0.0, -0.1]
    want = [6.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0]
    want += [-6.0, 0.0, 0.0, 0.0]
    for dtype in DTYPES:
        x = torch.tensor([row], dtype=dtype, device=DEVICE)
        w = torch.tensor([want], dtype=dtype, device=DEVICE)
        assert _bits_equal(fake_quantize(x), w), dtype  # zeros are +0, never −0
        assert _bits_equal(R.fake_quantize_ref(x), w), dtype


def test_scale_is_the_exact_power_of_two_and_handles_zero_rows() -> None:
    """sf = 2^⌊log2(6/amax)⌋ against float64 log2 on amax over 2^±100, and the hand values:
    amax 6 → 1, 3 → 2, 1.5 → 4, 1.5001 → 2; a zero row keeps scale 1 and stays zero."""
    g = generator("scale_exact")
    amax = torch.exp2(torch.empty(20000).uniform_(-100, 100, generator=g))
    e = R.pow2_exponent(amax)
    assert torch.equal(e.double(), torch.floor(torch.log2(6.0 / amax.double())))
    hand = R.pow2_exponent(torch.tensor([6.0, 3.0, 1.5, 1.5001, 0.0]))
    assert hand.tolist() == [0, 1, 2, 1, 0]
    x = torch.zeros(3, 40, device=DEVICE)
    x[1] = torch.tensor([3.0] * 40)
    x[2, 5] = 1.5001
    _, scale, _ = quantize_rows(x, out="e4m3")
    assert scale.tolist() == [1.0, 0.5, 0.5]
    assert _bits_equal(fake_quantize(x), R.fake_quantize_ref(x))


def test_all_equal_rows() -> None:
    """A constant row c quantizes to grid(c·sf)/sf: 1 → 1, 0.7 → 0.75 (5.6 → 6 at sf 8),
    −3 → −3, 5 → 6 (the tie goes up), 1e-30 → itself within a power of two."""
    cs = [1.0, 0.7, -3.0, 5.0]
    want = [1.0, 0.75, -3.0, 6.0]
    x = torch.tensor(cs).repeat_interleave(33).reshape(4, 33).to(DEVICE)
    got = fake_quantize(x)
    assert torch.equal(got, torch.tensor(want).repeat_interleave(33).reshape(4, 33).to(DEVICE))


def test_nan_and_inf_make_their_group_nan_and_leave_the_others() -> None:
    """A group holding NaN or ±inf dequantizes to NaN entirely (and its E8M0 byte is 0xFF);
    the other groups are quantized as if it were not there."""
    for dtype in DTYPES:
        x = _rows_with_spread((5, 38), "nan_inf", dtype)
        x[1, 7] = float("nan")
        x[3, 0] = float("inf")
        x[4, 37] = float("-inf")
        got = fake_quantize(x)
        assert torch.isnan(got[[1, 3, 4]]).all()
        assert _bits_equal(got[[0, 2]], R.fake_quantize_ref(x[[0, 2]]))
        assert _bits_equal(got, R.fake_quantize_ref(x))
        q = quantize(x)
        assert q.scale_bits[[1, 3, 4]].tolist() == [0xFF] * 3
        assert torch.isnan(dequantize(q)[1]).all()


# ----------------------------------------------------------------- bit-exact on odd shapes

CASES = [
    pytest.param((37, 123), -1, None, "e2m1", id="37x123-rows"),
    pytest.param((37, 123), 0, None, "e2m1", id="37x123-cols"),
    pytest.param((3, 5, 7), 1, None, "e2m1", id="3x5x7-axis1"),
    pytest.param((5, 31), None, None, "e2m1", id="5x31-tensor"),
    pytest.param((6, 3000), -1, None, "e2m1", id="6x3000-rows"),
    pytest.param((9, 96), -1, 32, "mxfp4", id="9x96-mxfp4"),
    pytest.param((7, 80), -1, 16, "nvfp4", id="7x80-nvfp4"),
    pytest.param((11, 48), 0, None, "e2m1", id="11x48-cols-even"),
    pytest.param((4096, 4096), -1, None, "e2m1", id="4096sq-rows", marks=GPU),
    pytest.param((4096, 4096), 0, None, "e2m1", id="4096sq-cols", marks=GPU),
    pytest.param((8192, 4096), -1, 32, "mxfp4", id="8192x4096-mxfp4", marks=GPU),
    pytest.param((8192, 4096), -1, 16, "nvfp4", id="8192x4096-nvfp4", marks=GPU),
    pytest.param((64, 20000), -1, None, "e2m1", id="64x20000-two-pass", marks=GPU),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize(("shape", "axis", "block", "fmt"), CASES)
def test_kernel_bit_exact_against_reference(shape, axis, block, fmt, dtype) -> None:
    """Dequantized values (every element written into a NaN-poisoned buffer), packed codes and
    stored scales equal the reference's bit for bit."""
    x = _rows_with_spread(shape, f"exact{shape}{axis}{fmt}{dtype}", dtype)
    want = R.fake_quantize_ref(x, axis=axis, fmt=fmt)
    assert _bits_equal(fake_quantize(x, axis=axis, fmt=fmt), want)
    rows = R.as_groups(x, axis, block).contiguous()
    buf = poisoned(tuple(rows.shape), dtype, DEVICE)
    quantize_rows(rows, out="dequant", nvfp4=fmt == "nvfp4", into=buf)
    assert _bits_equal(R.from_groups(buf, x, axis), want)
    if rows.shape[1] % 2 == 0:
        q, qr = quantize(x, axis=axis, fmt=fmt), quantize(x, axis=axis, fmt=fmt, use_kernels=False)
        assert torch.equal(q.packed, qr.packed)
        assert _bits_equal(q.scale, qr.scale)
        assert torch.equal(q.scale_bits, qr.scale_bits)
        assert _bits_equal(dequantize(q), want)


def test_two_passes_for_rows_longer_than_a_tile() -> None:
    """Rows longer than BLOCK_N are read twice (amax, then quantize): same bits as one pass."""
    x = _rows_with_spread((5, 300), "two_pass", torch.bfloat16)
    want = R.quantize_groups_ref(x)
    for out in ("dequant", "e4m3", "packed"):
        one, s1, _ = quantize_rows(x, out=out)
        two, s2, _ = quantize_rows(x, out=out, max_block_n=64)
        assert torch.equal(one.view(torch.uint8), two.view(torch.uint8)), out
        assert torch.equal(s1, want.scale) and torch.equal(s2, want.scale)
    packed, _, _ = quantize_rows(x, out="packed", max_block_n=64)
    assert torch.equal(R.unpack_codes(packed), want.codes)


def test_e4m3_bytes_are_the_scaled_grid_values() -> None:
    """The e4m3 output read back as float8_e4m3fn equals grid(x·sf) exactly (what _scaled_mm
    multiplies), every element written over poison."""
    x = _rows_with_spread((13, 70), "e4m3_bytes", torch.bfloat16)
    buf = torch.full((13, 70), 0x7F, dtype=torch.uint8, device=DEVICE)  # e4m3 NaN
    _, scale, _ = quantize_rows(x, out="e4m3", into=buf)
    got = buf.view(torch.float8_e4m3fn).float() * scale[:, None]
    assert torch.equal(got, R.fake_quantize_ref(x.float()))


def test_packed_layout_and_sizes() -> None:
    """Codes 0..15 are E2M1 patterns (sign·8 + index), two a byte, the even element low;
    MXFP4's E8M0 byte is 127 − e; an FP4 tensor takes n/2 + groups bytes."""
    x = torch.tensor([[0.5, -0.5, 6.0, -6.0, 0.0, 1.5, -3.0, 4.0]], device=DEVICE)
    q = quantize(x)
    assert q.packed.tolist() == [[0x91, 0xF7, 0x30, 0x6D]]
    assert q.scale_bits.tolist() == [127]
    y = _rows_with_spread((8, 64), "packed_sizes", torch.bfloat16)
    mx = quantize(y, fmt="mxfp4")
    e = R.pow2_exponent(y.float().reshape(-1, 32).abs().amax(1))
    assert mx.scale_bits.tolist() == (127 - e).tolist()
    assert mx.nbytes == 8 * 64 // 2 + 8 * 2
    assert _bits_equal(R.pack_codes(R.unpack_codes(q.packed)), q.packed)


def test_nvfp4_block_scales_are_e4m3_of_the_scaled_amax() -> None:
    """NVFP4: block scale = e4m3(block_amax · 448·6/g / 6) by torch's own cast (rounded by hand in
    the kernel), blocks spanning 2^−14..2^3 of the tensor amax; a block of zeros stays zero."""
    g = generator("nv_scales")
    x = torch.randn(40, 16, generator=g) * torch.exp2(torch.linspace(-14, 3, 40))[:, None]
    x[7] = 0.0
    x = x.to(DEVICE)
    _, sb, _ = quantize_rows(x, out="packed", nvfp4=True)
    amax = x.abs().amax(1)
    want = (amax * (2688.0 / amax.max() / 6.0)).clamp(max=448).to(torch.float8_e4m3fn).float()
    assert torch.equal(sb, want)
    assert (fake_quantize(x, fmt="nvfp4")[7] == 0).all()
    assert _bits_equal(fake_quantize(x, fmt="nvfp4"), R.fake_quantize_ref(x, fmt="nvfp4"))


def test_quantization_error_is_bounded_by_half_the_grid_step() -> None:
    """Independent sanity check of the whole path: the scaled amax lies in (3, 6], the widest
    grid step is 2, so |x − Q(x)| ≤ 1·2^−e < amax/3; values ≥ amax/3 (scaled ≥ 1, where the
    step is at most a half of the value) are within 1/4 relative."""
    x = _rows_with_spread((17, 257), "error_bound", torch.float32)
    amax = x.abs().amax(1, keepdim=True)
    err = (fake_quantize(x) - x).abs()
    assert (err <= amax / 3).all()
    big = x.abs() >= amax / 3
    assert big.sum() > 17
    assert ((err / x.abs().clamp_min(1e-30))[big] <= 0.25).all()


def test_bad_arguments_are_refused() -> None:
    x = torch.randn(4, 10, device=DEVICE)
    with pytest.raises(ValueError, match="multiple of block"):
        fake_quantize(x, block=4)
    with pytest.raises(ValueError, match="blocks of 32"):
        fake_quantize(x.repeat(1, 8)[:, :64], fmt="mxfp4", block=16)
    with pytest.raises(ValueError, match="even group length"):
        quantize(x[:, :9])
    with pytest.raises(TypeError, match="fp32, bf16 or fp16"):
        fake_quantize(x.to(torch.int32))
    with pytest.raises(ValueError, match="empty"):
        fake_quantize(x[:, :0])
    with pytest.raises(ValueError, match="unknown FP4 format"):
        fake_quantize(x, fmt="e3m0")


@pytest.mark.skipif(not interpreting(), reason="the interpreter's quirks")
def test_interpreter_canary_casts_the_kernels_avoid() -> None:
    """Under the interpreter fp32 → bf16 ``.to()`` truncates (the kernels round by hand) — if
    this starts failing, Triton fixed it and the hand rounding could go."""
    import triton
    import triton.language as tl

    @triton.jit
    def _cast(x_ptr, out_ptr):
        r = tl.arange(0, 16)
        tl.store(out_ptr + r, tl.load(x_ptr + r).to(tl.bfloat16))

    x = torch.full((16,), 1.0 + 2.0**-8 + 2.0**-12)  # rounds up to 1 + 2^-7 in bf16
    out = torch.empty(16, dtype=torch.bfloat16)
    _cast[(1,)](x, out)
    assert out[0].item() != x.to(torch.bfloat16)[0].item()
    assert math.isclose(out[0].item(), 1.0 + 2.0**-8, rel_tol=0) or out[0].item() == 1.0
