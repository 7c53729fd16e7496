"""POET-X kernels against the plain-PyTorch reference: skew packing, the Cayley–Neumann
polynomial (forward and backward), the permuted block rotation and its per-block gradient.

Odd shapes (b = 24 and 40, not powers of two; 37 rows) under Triton's CPU interpreter in CI, the
real sizes of the claim (b = 256, 2048 tokens, bf16) on a GPU (marked ``gpu``). Outputs are
poisoned with NaN before each call; low precision is judged by KERNELS.md's rule.
"""

from __future__ import annotations

import pytest
import torch

from kernels.poet import launch as L
from kernels.poet import reference as ref
from kernels.runtime.device import interpreting
from kernels.runtime.testing import assert_close_lowp, generator, interpreter_quirks, poisoned

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"

if CUDA:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references stay fp32


def _skew(nb: int, b: int, norm: float, gen: torch.Generator) -> torch.Tensor:
    """A batch of random skew-symmetric fp32 blocks of spectral norm `norm` each."""
    q = ref.skew_from_vec(torch.randn(nb, ref.n_free(b), generator=gen, dtype=torch.float64), b)
    q = q / torch.linalg.matrix_norm(q, ord=2)[:, None, None] * norm
    return q.float().to(DEVICE)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a64 - b64).abs().max() / b64.abs().max().clamp_min(1e-30))


# ------------------------------------------------------------------------------------ packing


@pytest.mark.parametrize("b", [2, 24, 40])
def test_skew_packing_round_trip(b: int) -> None:
    gen = generator(f"pack{b}")
    theta = torch.randn(3, ref.n_free(b), generator=gen).to(DEVICE)
    q = L.skew_from_vec_(theta, b, out=poisoned((3, b, b), torch.float32, DEVICE))
    assert torch.equal(q.cpu(), ref.skew_from_vec(theta.cpu(), b))
    assert torch.equal(q, -q.transpose(1, 2))
    packed = L.vec_from_skew_(q, out=poisoned(tuple(theta.shape), torch.float32, DEVICE))
    assert torch.equal(packed, theta)


def test_skew_gradient_is_antisymmetrised() -> None:
    b = 24
    gen = generator("packgrad")
    theta = torch.randn(2, ref.n_free(b), generator=gen).to(DEVICE).requires_grad_(True)
    g = torch.randn(2, b, b, generator=gen).to(DEVICE)  # a general (not skew) upstream gradient
    (L.skew_from_vec(theta, b) * g).sum().backward()
    theta_ref = theta.detach().cpu().requires_grad_(True)
    (ref.skew_from_vec(theta_ref, b) * g.cpu()).sum().backward()
    torch.testing.assert_close(theta.grad.cpu(), theta_ref.grad, rtol=0, atol=1e-6)
    # and it is dQ_ij − dQ_ji, written out by hand for one entry: (i, j) = (0, 1) is index 0
    assert float(theta.grad[0, 0]) == pytest.approx(float(g[0, 0, 1] - g[0, 1, 0]), abs=1e-6)


# ------------------------------------------------------------------------------ Cayley–Neumann


@pytest.mark.parametrize("norm", [0.01, 0.03, 0.1, 0.3])
def test_candidate_polynomials_orthogonality_against_exact_cayley(norm: float) -> None:
    """‖RᵀR − I‖₂ of each candidate over ‖Q‖ (float64): Q is normal with eigenvalues ±iλ, so
    RᵀR − I = −2Q⁴ + Q⁸ (released kernel, c = 1) has norm 2s⁴ − s⁸, and 4Q⁶ + 4Q⁸ (Taylor-4,
    c = 2, ours) has norm 4s⁶ − 4s⁸, s = ‖Q‖₂; the exact Cayley transform is orthogonal."""
    gen = generator(f"ortho{norm}")
    q = _skew(4, 32, norm, gen).double().cpu()
    exact = ref.cayley_exact(q)
    assert float(ref.orthogonality_error(exact)) < 1e-13
    err_kernel = float(ref.orthogonality_error(ref.cayley_neumann(q, ref.NEUMANN3)))
    err_taylor = float(ref.orthogonality_error(ref.cayley_neumann(q, ref.TAYLOR4)))
    s = norm
    assert err_kernel == pytest.approx(2 * s**4 - s**8, rel=1e-6, abs=1e-15)
    assert err_taylor == pytest.approx(4 * s**6 - 4 * s**8, rel=1e-6, abs=1e-15)
    assert err_taylor < err_kernel
    # distance to the exact transform: Taylor-4 misses 2Q⁵ + …, the released kernel Q⁴ + …
    d_taylor = float(torch.linalg.matrix_norm(ref.cayley_neumann(q) - exact, ord=2).max())
    d_kernel = float(torch.linalg.matrix_norm(ref.cayley_neumann(q, 1.0) - exact, ord=2).max())
    assert d_taylor < d_kernel
    assert d_taylor == pytest.approx(2 * s**5, rel=0.5)


@pytest.mark.parametrize("c", [ref.TAYLOR4, ref.NEUMANN3])
@pytest.mark.parametrize("b", [24, 40])
def test_cayley_neumann_forward_matches_reference(b: int, c: float) -> None:
    gen = generator(f"cnp{b}{c}")
    q = _skew(3, b, 0.2, gen)
    r, q2 = L.cayley_neumann_fwd(q, c)
    r64 = ref.cayley_neumann(q.double().cpu(), c)
    assert _rel(r, r64) < 1e-6
    assert _rel(q2, q.double().cpu() @ q.double().cpu()) < 1e-6
    out = L._cnp_mm(
        q, q, adds=((1.0, q),), s_eye=1.0, out=poisoned(tuple(q.shape), q.dtype, DEVICE)
    )
    assert not out.isnan().any()


def test_cayley_neumann_kernel_orthogonality_in_fp32() -> None:
    gen = generator("cnp-ortho")
    for norm in (0.01, 0.05):
        r = L.cayley_neumann(_skew(4, 40, norm, gen))
        assert float(ref.orthogonality_error(r)) < 4 * norm**6 + 2e-6  # fp32: ~b·2⁻²⁴ noise


@pytest.mark.parametrize("c", [ref.TAYLOR4, ref.NEUMANN3])
def test_cayley_neumann_backward_matches_autograd(c: float) -> None:
    b = 40
    gen = generator(f"cnpbwd{c}")
    q = _skew(3, b, 0.3, gen)
    g = torch.randn(3, b, b, generator=gen).to(DEVICE)
    qk = q.clone().requires_grad_(True)
    (L.cayley_neumann(qk, c) * g).sum().backward()
    q64 = q.double().cpu().requires_grad_(True)
    (ref.cayley_neumann(q64, c) * g.double().cpu()).sum().backward()
    assert _rel(qk.grad, q64.grad) < 1e-5


def test_cayley_neumann_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="float32"):
        L.cayley_neumann(torch.zeros(2, 16, 16, dtype=torch.float64, device=DEVICE))
    with pytest.raises(ValueError, match="precision"):
        L.cayley_neumann(torch.zeros(2, 16, 16, device=DEVICE), precision="fast")


# ------------------------------------------------------------------------------ block rotation


def _perm(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen).to(DEVICE, torch.int32)


def _rotation_case(m: int, nb: int, b: int, name: str):
    gen = generator(name)
    x = torch.randn(m, nb * b, generator=gen).to(DEVICE)
    blocks = ref.cayley_neumann(_skew(nb, b, 0.5, gen).double().cpu()).float().to(DEVICE)
    return gen, x, blocks


@pytest.mark.parametrize("gather", [False, True])
@pytest.mark.parametrize("scatter", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_block_rotate_fp32(gather: bool, scatter: bool, transpose: bool) -> None:
    m, nb, b = 37, 3, 24
    gen, x, blocks = _rotation_case(m, nb, b, f"rot{gather}{scatter}{transpose}")
    blk = blocks.transpose(1, 2) if transpose else blocks
    gi = _perm(nb * b, gen) if gather else None
    so = _perm(nb * b, gen) if scatter else None
    out = L.block_rotate_(x, blk, gi, so, out=poisoned((m, nb * b), torch.float32, DEVICE))
    want = ref.block_rotate(
        x.double(),
        blk.double(),
        None if gi is None else gi.long(),
        None if so is None else so.long(),
    )
    assert _rel(out, want) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_block_rotate_low_precision(dtype: torch.dtype) -> None:
    m, nb, b = 37, 2, 40
    gen, x, blocks = _rotation_case(m, nb, b, f"rotlp{dtype}")
    gi, so = _perm(nb * b, gen), _perm(nb * b, gen)
    xl, bl = x.to(dtype), blocks.to(dtype)
    out = L.block_rotate_(xl, bl, gi, so, out=poisoned((m, nb * b), dtype, DEVICE))
    ref32 = ref.block_rotate(xl.double(), bl.double(), gi.long(), so.long())
    lowp = ref.block_rotate(xl, bl, gi.long(), so.long())
    assert out.dtype == dtype
    assert_close_lowp(out.float(), ref32, lowp)


@pytest.mark.parametrize("gx", [False, True])
@pytest.mark.parametrize("gdy", [False, True])
def test_block_rotate_grad(gx: bool, gdy: bool) -> None:
    m, nb, b = 37, 3, 24
    gen = generator(f"rotgrad{gx}{gdy}")
    x = torch.randn(m, nb * b, generator=gen).to(DEVICE)
    dy = torch.randn(m, nb * b, generator=gen).to(DEVICE)
    px = _perm(nb * b, gen) if gx else None
    pd = _perm(nb * b, gen) if gdy else None
    got = L.block_rotate_grad_(x, dy, nb, px, pd)
    want = ref.block_rotate_grad(
        x.double(),
        dy.double(),
        nb,
        None if px is None else px.long(),
        None if pd is None else pd.long(),
    )
    assert got.dtype == torch.float32 and got.shape == (nb, b, b)
    assert _rel(got, want) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("in_place", [False, True])
def test_permute_cols_is_an_exact_column_gather(dtype: torch.dtype, in_place: bool) -> None:
    """The coalesced permutation pass: out[:, c] = x[:, idx[c]] bit for bit, 72 columns (not a
    power of two: the row tile is masked) and 37 rows (not a multiple of the rows a program
    owns), written in place or into a poisoned buffer."""
    gen = generator(f"permute{dtype}{in_place}")
    x = torch.randn(37, 72, generator=gen).to(DEVICE, dtype)
    idx = _perm(72, gen)
    want = x.cpu()[:, idx.long().cpu()]
    if in_place:
        got = x.clone()
        assert L.permute_cols_(got, idx, out=got) is got
    else:
        got = L.permute_cols_(x, idx, out=poisoned((37, 72), dtype, DEVICE))
    assert torch.equal(got.cpu(), want)


def test_inverse_perm_is_cached_until_the_permutation_changes() -> None:
    gen = generator("inverse")
    perm = _perm(40, gen)
    inv = L.inverse_perm(perm)
    assert torch.equal(inv.long().cpu()[perm.long().cpu()], torch.arange(40))
    assert L.inverse_perm(perm) is inv  # cached: a scatter allocates nothing after its first call
    perm.copy_(_perm(40, gen))  # a merge rewrites the buffer in place
    inv2 = L.inverse_perm(perm)
    assert torch.equal(inv2.long().cpu()[perm.long().cpu()], torch.arange(40))


def test_block_rotate_in_place_with_both_permutations() -> None:
    """out = x: gather into x, rotate x in place, permute x in place."""
    m, nb, b = 37, 3, 24
    gen, x, blocks = _rotation_case(m, nb, b, "rotinplace")
    gi, so = _perm(nb * b, gen), _perm(nb * b, gen)
    want = ref.block_rotate(x.double(), blocks.double(), gi.long(), so.long())
    buf = x.clone()
    assert L.block_rotate_(buf, blocks, gi, so, out=buf) is buf
    assert _rel(buf, want) < 1e-5


def test_block_rotate_refuses_bad_input() -> None:
    x = torch.zeros(4, 48, device=DEVICE)
    blocks = torch.zeros(2, 24, 24, device=DEVICE)
    with pytest.raises(ValueError, match="int32 permutation"):
        L.block_rotate_(x, blocks, gather=torch.arange(48, device=DEVICE))
    with pytest.raises(ValueError, match="do not tile"):
        L.block_rotate_(x, torch.zeros(3, 24, 24, device=DEVICE))
    with pytest.raises(ValueError, match="must share"):
        L.block_rotate_(x, blocks.double())


# -------------------------------------------------------------------------------- the layer


def _layer_case(m: int, n_in: int, n_out: int, b_in: int, b_out: int, name: str):
    gen = generator(name)
    x = torch.randn(m, n_in, generator=gen).to(DEVICE)
    w0p = (torch.randn(n_out, n_in, generator=gen) / n_in**0.5).to(DEVICE)
    r = L.cayley_neumann(_skew(n_out // b_out, b_out, 0.3, gen))
    p = L.cayley_neumann(_skew(n_in // b_in, b_in, 0.3, gen))
    return gen, x, w0p, r, p, _perm(n_in, gen), _perm(n_out, gen)


@pytest.mark.parametrize("recompute", [False, True])
def test_layer_matches_dense_reference_fp32(recompute: bool) -> None:
    """Output and gradients (x, R blocks, P blocks) against x·W_effᵀ with W_eff materialised
    (the original POET) and differentiated by autograd, in float64."""
    m, n_in, n_out, b_in, b_out = 37, 72, 80, 24, 40
    gen, x, w0p, r, p, pi, po = _layer_case(m, n_in, n_out, b_in, b_out, f"layer{recompute}")
    dy = torch.randn(m, n_out, generator=gen).to(DEVICE)
    xk, rk, pk = (t.clone().requires_grad_(True) for t in (x, r, p))
    y = L.poet_linear(xk, w0p, rk, pk, pi, po, recompute=recompute)
    (y * dy).sum().backward()
    x64, r64, p64 = (t.double().cpu().requires_grad_(True) for t in (x, r, p))
    w_eff = ref.effective_weight(w0p.double().cpu(), r64, p64, pi.long().cpu(), po.long().cpu())
    y64 = x64 @ w_eff.t()
    (y64 * dy.double().cpu()).sum().backward()
    assert _rel(y, y64) < 1e-5
    assert _rel(xk.grad, x64.grad) < 1e-5
    assert _rel(rk.grad, r64.grad) < 1e-5
    assert _rel(pk.grad, p64.grad) < 1e-5


def test_layer_bf16_within_the_low_precision_rule() -> None:
    m, n_in, n_out, b = 37, 48, 72, 24
    _gen, x, w0p, r, p, pi, po = _layer_case(m, n_in, n_out, b, b, "layerbf16")
    xb, wb = x.bfloat16(), w0p.bfloat16()
    y = L.poet_linear(xb, wb, r, p, pi, po)
    args = (r, p, pi.long(), po.long())
    ref32 = ref.poet_linear(
        xb.double(), wb.double(), *(a.double() if a.is_floating_point() else a for a in args)
    )
    lowp = ref.poet_linear(xb, wb, *args)
    assert y.dtype == torch.bfloat16
    assert_close_lowp(y.float(), ref32, lowp)


def test_layer_skips_dx_when_input_needs_no_grad() -> None:
    _gen, x, w0p, r, p, pi, po = _layer_case(5, 48, 48, 24, 24, "nodx")
    rk = r.clone().requires_grad_(True)
    L.poet_linear(x, w0p, rk, p, pi, po).sum().backward()
    assert rk.grad is not None and x.grad is None


def test_interpreter_canary_justifies_the_upcast() -> None:
    """The rotation kernels upcast tiles to fp32 under the interpreter because its bf16 tl.dot
    is wrong; on the GPU they must not need to."""
    quirks = interpreter_quirks(DEVICE)
    assert quirks["bf16_dot_wrong"] == interpreting()


# ------------------------------------------------------------------------------ real sizes


@pytest.mark.parametrize("n_out", [4096, 14336])
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_layer_real_size_bf16(n_out: int) -> None:
    m, n_in, b = 2048, 4096, 256
    gen, x, w0p, r, p, pi, po = _layer_case(m, n_in, n_out, b, b, f"real{n_out}")
    dy = torch.randn(m, n_out, generator=gen).to(DEVICE)
    xb, wb, dyb = x.bfloat16(), w0p.bfloat16(), dy.bfloat16()
    for recompute in (False, True):
        xk, rk, pk = (t.clone().requires_grad_(True) for t in (xb, r, p))
        y = L.poet_linear(xk, wb, rk, pk, pi, po, recompute=recompute)
        y.backward(dyb)
        x32, r32, p32 = (t.float().clone().requires_grad_(True) for t in (xb, r, p))
        y32 = ref.poet_linear(x32, wb.float(), r32, p32, pi.long(), po.long())
        y32.backward(dyb.float())
        xl, rl, pl = (t.clone().requires_grad_(True) for t in (xb, r, p))
        yl = ref.poet_linear(xl, wb, rl, pl, pi.long(), po.long())
        yl.backward(dyb)
        assert_close_lowp(y.float(), y32, yl.float())
        assert_close_lowp(xk.grad.float(), x32.grad, xl.grad.float())
        assert _rel(rk.grad, r32.grad) < 2e-2 and _rel(pk.grad, p32.grad) < 2e-2


@pytest.mark.parametrize("n_out", [4096, 14336])
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_layer_real_size_fp32_exact(n_out: int) -> None:
    m, n_in, b = 2048, 4096, 256
    _gen, x, w0p, r, p, pi, po = _layer_case(m, n_in, n_out, b, b, f"real32{n_out}")
    y = L.poet_linear(x, w0p, r, p, pi, po)
    want = ref.poet_linear(x.double(), w0p.double(), r.double(), p.double(), pi.long(), po.long())
    assert _rel(y, want) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_rotation_real_size_makes_no_gathered_copy() -> None:
    """The permuted rotation allocates its output and nothing else (the gather is in the load)."""
    gen, x, blocks = _rotation_case(2048, 16, 256, "nocopy")
    xb, bb = x.bfloat16(), blocks.bfloat16()
    gi, so = _perm(4096, gen), _perm(4096, gen)
    out = torch.empty_like(xb)
    L.block_rotate_(xb, bb, gi, so, out=out)  # compile and tune first
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    L.block_rotate_(xb, bb, gi, so, out=out)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before == 0


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_direct_launches_repeat_the_first_launch() -> None:
    """After its first launch (through the JIT, tuned) every POET-X kernel is launched directly
    (launch._BOUND); the later calls must give the first call's result bit for bit and the
    reference's, at the real size in bf16."""
    gen, x, blocks = _rotation_case(2048, 16, 256, "direct")
    xb, bb = x.bfloat16(), blocks.bfloat16()
    gi, so = _perm(4096, gen), _perm(4096, gen)
    want = ref.block_rotate(xb.float(), bb.float(), gi.long(), so.long())
    first = L.block_rotate_(xb, bb, gi, so)
    dy = torch.randn(2048, 4096, generator=gen).to(DEVICE, torch.bfloat16)
    g_first = L.block_rotate_grad_(xb, dy, 16, gi, so)
    bound_before = len(L._BOUND)
    for _ in range(2):
        again = L.block_rotate_(xb, bb, gi, so)
        assert torch.equal(again, first)
        assert torch.equal(L.block_rotate_grad_(xb, dy, 16, gi, so), g_first)
    assert len(L._BOUND) == bound_before  # no new specialisation: the direct path was taken
    assert _rel(first, want) < 2e-2
    g_want = ref.block_rotate_grad(xb.float(), dy.float(), 16, gi.long(), so.long())
    assert _rel(g_first, g_want) < 1e-2


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cayley_neumann_bf16_products_real_size() -> None:
    """The 16-bit layers' polynomial (bf16 operands, fp32 accumulation and epilogue): its error
    is a bf16 rounding of the higher-order terms only, I + 2Q staying exact in fp32."""
    gen = generator("cnp-bf16")
    q = _skew(16, 256, 0.3, gen)
    g = torch.randn(16, 256, 256, generator=gen).to(DEVICE)
    qk = q.clone().requires_grad_(True)
    r = L.cayley_neumann(qk, precision="bf16")
    (r * g).sum().backward()
    q64 = q.double().requires_grad_(True)
    r64 = ref.cayley_neumann(q64)
    (r64 * g.double()).sum().backward()
    eye = torch.eye(256, device=DEVICE, dtype=torch.float64)
    higher = (r64 - eye - 2 * q64).detach().abs().max()
    assert float((r.double() - r64).abs().max()) <= 2**-7 * float(higher)
    assert _rel(qk.grad, q64.grad) < 2e-2
