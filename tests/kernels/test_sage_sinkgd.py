"""SinkGD kernels (scale vectors, grouped apply) against the literal PyTorch transcription."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from kernels.sage.reference import as_matrix, sinkgd_reference_step, sinkgd_reference_update

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

SHAPES = [
    pytest.param((37, 123), id="37x123"),
    pytest.param((150, 29), id="150x29"),
    pytest.param((70,), id="vector70"),
    pytest.param((4096, 4096), id="4096x4096", marks=GPU),
    pytest.param((1376, 512), id="1376x512", marks=GPU),
]


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def _gradient(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Rows and columns of very different scales, so the normalisation has work to do."""
    g = torch.randn(shape, generator=gen)
    g = g * torch.empty(shape[-1]).uniform_(-2, 2, generator=gen).exp()
    if g.ndim >= 2:
        g = g * torch.empty(shape[0], 1).uniform_(-2, 2, generator=gen).exp()
    return g.to(DEVICE)


def _update_from_scales(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[:, None] * as_matrix(g).float() * b[None, :]


@pytest.mark.parametrize("shape", SHAPES)
def test_sinkgd_scales_reproduce_the_normalised_gradient(shape: tuple[int, ...]) -> None:
    from kernels.sage.launch import sinkgd_scales

    gen = torch.Generator().manual_seed(_seed(shape))
    grads = [_gradient(shape, gen) for _ in range(3)]
    a, b = sinkgd_scales(grads, iters=5, eps=1e-8)
    rows, cols = as_matrix(grads[0]).shape
    assert a.shape == (3, rows) and b.shape == (3, cols)
    for k, g in enumerate(grads):
        got = _update_from_scales(g, a[k], b[k])
        ref = sinkgd_reference_update(g.double(), iters=5, eps=1e-8)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
        # the last pass normalised the columns to sqrt(rows); five passes bring rows near sqrt(cols)
        col_norms = torch.linalg.vector_norm(got.double(), dim=0)
        expected = torch.full_like(col_norms, math.sqrt(rows))
        torch.testing.assert_close(col_norms, expected, rtol=1e-5, atol=0.0)
        row_norms = torch.linalg.vector_norm(got.double(), dim=1)
        assert float((row_norms / math.sqrt(cols) - 1).abs().max()) < 0.05


@pytest.mark.parametrize("shape", SHAPES)
def test_sinkgd_grouped_step_matches_reference(shape: tuple[int, ...]) -> None:
    """Four same-shape parameters in one launch per pass: each moves as the reference says."""
    from kernels.sage.launch import sinkgd_step_

    gen = torch.Generator().manual_seed(_seed("step", shape))
    params = [torch.randn(shape, generator=gen).to(DEVICE) for _ in range(4)]
    refs = [p.clone() for p in params]
    hyper = dict(lr=3e-2, weight_decay=0.1, iters=5, eps=1e-8)
    for _ in range(2):
        grads = [_gradient(shape, gen) for _ in params]
        sinkgd_step_(params, grads, **hyper)
        for r, g in zip(refs, grads, strict=True):
            sinkgd_reference_step(r, g, **hyper)
    for p, r in zip(params, refs, strict=True):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-5 * float(r.abs().max()))


@pytest.mark.parametrize(
    "shape",
    [pytest.param((40, 66), id="40x66"), pytest.param((2048, 512), id="2048x512", marks=GPU)],
)
def test_sinkgd_bf16_within_low_precision_rule(shape: tuple[int, ...]) -> None:
    """bf16 parameters and gradients: max|kern − ref32| ≤ 2·max|torch_bf16 − ref32| + 5e-2."""
    from kernels.sage.launch import sinkgd_step_

    gen = torch.Generator().manual_seed(_seed("bf16", shape))
    p = torch.randn(shape, generator=gen).to(DEVICE).bfloat16()
    g = _gradient(shape, gen).bfloat16()
    p_lp, p_32 = p.clone(), p.float()
    hyper = dict(lr=5e-2, weight_decay=0.1)
    sinkgd_step_([p], [g], **hyper)
    sinkgd_reference_step(p_lp, g, **hyper)
    sinkgd_reference_step(p_32, g.float(), **hyper)
    assert p.dtype == torch.bfloat16
    err = (p.float() - p_32).abs().max()
    err_lp = (p_lp.float() - p_32).abs().max()
    assert err <= 2 * err_lp + 5e-2, (float(err), float(err_lp))


def test_zero_rows_and_columns_stay_zero_and_finite() -> None:
    """A gradient with a zero row and a zero column (and an all-zero one): no NaN, no growth."""
    from kernels.sage.launch import sinkgd_step_

    gen = torch.Generator().manual_seed(_seed("zeros"))
    g = _gradient((33, 47), gen)
    g[5] = 0.0
    g[:, 7] = 0.0
    params = [torch.randn(33, 47, generator=gen).to(DEVICE) for _ in range(2)]
    refs = [p.clone() for p in params]
    grads = [g, torch.zeros_like(g)]
    sinkgd_step_(params, grads, lr=1e-2, weight_decay=0.0)
    for p, r, gg in zip(params, refs, grads, strict=True):
        sinkgd_reference_step(r, gg, lr=1e-2, weight_decay=0.0)
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(params[1], refs[1], rtol=0, atol=0)


def test_sinkgd_rejects_mixed_groups() -> None:
    from kernels.sage.launch import sinkgd_step_

    a, b = torch.zeros(4, 5, device=DEVICE), torch.zeros(5, 4, device=DEVICE)
    with pytest.raises(ValueError, match="one shape"):
        sinkgd_step_([a, b], [a, b], lr=1e-3, weight_decay=0.0)
    with pytest.raises(ValueError, match="match their gradients"):
        sinkgd_step_([a], [b], lr=1e-3, weight_decay=0.0)
    with pytest.raises(ValueError, match="at least one normalisation"):
        sinkgd_step_([a], [a], lr=1e-3, weight_decay=0.0, iters=0)
