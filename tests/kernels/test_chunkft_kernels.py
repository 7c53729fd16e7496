"""ChunkFT's slice kernels against the plain-PyTorch reference (full dW formed, then sliced).

Fresh seeded inputs per case, odd shapes that are not multiples of any tile, outputs poisoned
with NaN before the call; fp32 within 1e-5 relative, bf16 by KERNELS.md's rule. Small shapes run
through Triton's interpreter in CI, the real sizes of a 7B layer on a GPU (marked ``gpu``).
"""

from __future__ import annotations

import pytest
import torch

from kernels.chunkft import adamw_slice_, embedding_dw, sliced_dw, sliced_dw_adamw_
from kernels.chunkft import reference as ref
from kernels.forge.rules import StepScalars
from kernels.runtime.testing import assert_close_lowp, generator, guarded, poisoned, rel_err

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

# (T, N, K, start, end, strategy): "column" slices N (rows of W), "row" slices K
CASES = [
    pytest.param(37, 123, 45, 7, 100, "column", id="col-37x123x45"),
    pytest.param(37, 123, 45, 3, 41, "row", id="row-37x123x45"),
    pytest.param(19, 70, 3, 69, 70, "column", id="col-one-row"),
    pytest.param(50, 5, 130, 0, 130, "row", id="row-whole"),
    pytest.param(1024, 11008, 4096, 1000, 3333, "column", id="col-7b-mlp", marks=GPU),
    pytest.param(1024, 4096, 11008, 2048, 9001, "row", id="row-7b-down", marks=GPU),
    pytest.param(1024, 32000, 4096, 5000, 11111, "column", id="col-7b-head", marks=GPU),
]
SC = StepScalars.adamw(step=3, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)


def _inputs(name: str, T: int, N: int, K: int, dtype: torch.dtype):
    g = generator(name)
    dy = torch.randn(T, N, generator=g).to(DEVICE, dtype)
    x = torch.randn(T, K, generator=g).to(DEVICE, dtype)
    return dy, x


def _slice_shape(N: int, K: int, s: int, e: int, strategy: str) -> tuple[int, int]:
    return (e - s, K) if strategy == "column" else (N, e - s)


@pytest.mark.parametrize("T,N,K,s,e,strategy", CASES)
def test_sliced_dw_fp32(T, N, K, s, e, strategy):
    dy, x = _inputs(f"fp32{T}{N}{K}{strategy}", T, N, K, torch.float32)
    out = poisoned(_slice_shape(N, K, s, e, strategy), torch.float32, DEVICE)
    got = sliced_dw(dy, x, s, e, strategy, out=out)
    assert got is out
    want = ref.sliced_dw_reference(dy, x, s, e, strategy)
    assert rel_err(got, want) <= 1e-5
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("T,N,K,s,e,strategy", CASES)
def test_sliced_dw_bf16_rule(T, N, K, s, e, strategy):
    dy, x = _inputs(f"bf16{T}{N}{K}{strategy}", T, N, K, torch.bfloat16)
    got = sliced_dw(
        dy,
        x,
        s,
        e,
        strategy,
        out=poisoned(_slice_shape(N, K, s, e, strategy), torch.float32, DEVICE),
    )
    ref32 = ref.sliced_dw_reference(dy, x, s, e, strategy)
    full_lowp = dy.t() @ x  # torch in bf16: what the kernel's precision allows
    lowp = full_lowp[s:e] if strategy == "column" else full_lowp[:, s:e]
    assert_close_lowp(got, ref32, lowp)


def test_sliced_dw_reads_strided_views():
    """Inputs that are themselves non-contiguous views (a transposed activation) work."""
    g = generator("strided")
    dy = torch.randn(41, 33, generator=g).to(DEVICE)
    x = torch.randn(29, 41, generator=g).to(DEVICE).t()  # [41, 29], stride (1, 41)
    got = sliced_dw(dy, x, 4, 31, "column")
    assert rel_err(got, ref.sliced_dw_reference(dy, x, 4, 31, "column")) <= 1e-5


def test_sliced_dw_folds_leading_dims():
    g = generator("3d")
    dy = torch.randn(2, 9, 40, generator=g).to(DEVICE)
    x = torch.randn(2, 9, 21, generator=g).to(DEVICE)
    got = sliced_dw(dy, x, 5, 17, "row")
    want = ref.sliced_dw_reference(dy.reshape(18, 40), x.reshape(18, 21), 5, 17, "row")
    assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("T,N,K,s,e,strategy", CASES)
@pytest.mark.parametrize("wdtype", [torch.float32, torch.bfloat16], ids=["w32", "wbf16"])
def test_fused_adamw_epilogue(T, N, K, s, e, strategy, wdtype):
    dy, x = _inputs(f"fused{T}{N}{K}{strategy}{wdtype}", T, N, K, torch.float32)
    g = generator(f"fusedw{T}{N}{K}{strategy}{wdtype}")
    w0 = torch.randn(N, K, generator=g).to(DEVICE, wdtype)
    shape = _slice_shape(N, K, s, e, strategy)
    m0 = (0.1 * torch.randn(shape, generator=g)).to(DEVICE)
    v0 = (0.01 * torch.rand(shape, generator=g)).to(DEVICE)
    w, check = guarded(w0)
    m, v = m0.clone(), v0.clone()
    sliced_dw_adamw_(dy, x, w, s, e, m, v, SC, strategy)
    check()
    w_ref, m_ref, v_ref = w0.clone(), m0.clone(), v0.clone()
    ref.sliced_dw_adamw_reference_(dy, x, w_ref, s, e, m_ref, v_ref, SC, strategy)
    assert rel_err(m, m_ref) <= 1e-5 and rel_err(v, v_ref) <= 1e-5
    inside = (slice(s, e), slice(None)) if strategy == "column" else (slice(None), slice(s, e))
    outside = torch.ones(N, K, dtype=torch.bool, device=DEVICE)
    outside[inside] = False
    assert torch.equal(w[outside], w0[outside])  # nothing outside the slice moved
    if wdtype == torch.float32:
        assert rel_err(w, w_ref) <= 1e-6
    else:  # bf16 rounded to nearest: at most one ulp where the fp32 updates differ at a tie
        assert (w.float() - w_ref.float()).abs().max() <= 2**-7 * w_ref.float().abs().max()
    assert not torch.equal(w[inside], w0[inside])


@pytest.mark.parametrize(
    "shape,s,e",
    [((3, 41), 10, 137), ((97,), 0, 150), ((5, 7), 149, 150), ((1, 1024), 3000, 9000)],
    ids=["3x41", "whole", "last-row", "7b-slice"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_embedding_dw(shape, s, e, dtype):
    if shape[-1] == 1024 and not CUDA:
        pytest.skip("real size runs on the GPU")
    g = generator(f"emb{shape}{s}{dtype}")
    vocab = max(150, e + 10)
    D = 70 if shape[-1] != 1024 else 4096
    ids = torch.randint(0, vocab, shape, generator=g)
    ids.view(-1)[0] = -1  # a masked (padding) token contributes nothing
    ids.view(-1)[1:4] = s  # repeated ids accumulate
    dy = torch.randn(*shape, D, generator=g).to(DEVICE, dtype)
    ids = ids.to(DEVICE)
    out = poisoned((e - s, D), torch.float32, DEVICE)
    got = embedding_dw(ids, dy, s, e, out=out)
    want = ref.embedding_dw_reference(ids, dy, s, e)
    assert torch.isfinite(got).all()
    assert rel_err(got, want) <= 1e-6
    assert torch.equal(embedding_dw(ids, dy, s, e), got)  # deterministic


@pytest.mark.parametrize("shape", [(37, 45), (123,), (5, 3, 7)], ids=["37x45", "v123", "5x3x7"])
@pytest.mark.parametrize("wdtype", [torch.float32, torch.bfloat16], ids=["w32", "wbf16"])
def test_adamw_slice_matches_reference_and_torch(shape, wdtype):
    g = generator(f"adamw{shape}{wdtype}")
    base = torch.randn(shape[0] + 10, *shape[1:], generator=g).to(DEVICE, wdtype)
    view = base[4 : 4 + shape[0]]  # a slice of a larger tensor: neighbours must not move
    grad = torch.randn(shape, generator=g).to(DEVICE)
    m = torch.zeros(shape, device=DEVICE)
    v = torch.zeros(shape, device=DEVICE)
    before = base.clone()
    sc = StepScalars.adamw(step=1, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    adamw_slice_(view, grad, m, v, sc)
    assert torch.equal(base[:4], before[:4]) and torch.equal(
        base[4 + shape[0] :], before[4 + shape[0] :]
    )
    # torch's own AdamW on a copy of the slice
    p = torch.nn.Parameter(before[4 : 4 + shape[0]].float().clone())
    p.grad = grad.clone()
    torch.optim.AdamW(
        [p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=False
    ).step()
    if wdtype == torch.float32:
        assert rel_err(view, p.detach()) <= 1e-6
    else:
        assert (view.float() - p.detach()).abs().max() <= 2**-7 * p.detach().abs().max()


def test_bad_inputs_fail_loudly():
    dy = torch.randn(8, 10, device=DEVICE)
    x = torch.randn(8, 6, device=DEVICE)
    with pytest.raises(ValueError, match="strategy"):
        sliced_dw(dy, x, 0, 3, "diagonal")
    with pytest.raises(ValueError, match="outside"):
        sliced_dw(dy, x, 4, 11, "column")
    with pytest.raises(ValueError, match="empty"):
        sliced_dw(dy, x, 3, 3, "row")
    with pytest.raises(ValueError, match="share T"):
        sliced_dw(dy, x[:5], 0, 3)
    with pytest.raises(TypeError, match="bf16"):
        sliced_dw(dy.double(), x.double(), 0, 3)
    with pytest.raises(ValueError, match="out must be"):
        sliced_dw(dy, x, 0, 3, out=torch.empty(3, 5, device=DEVICE))
    w = torch.randn(10, 6, device=DEVICE)
    with pytest.raises(ValueError, match="exp_avg"):
        sliced_dw_adamw_(
            dy, x, w, 0, 3, torch.zeros(3, 5, device=DEVICE), torch.zeros(3, 6, device=DEVICE), SC
        )
    with pytest.raises(TypeError, match="int32 or int64"):
        embedding_dw(torch.zeros(8, device=DEVICE), dy, 0, 3)
