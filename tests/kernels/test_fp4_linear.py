"""The FP4 linear layer (FP8 GEMM through torch._scaled_mm, straight-through dX, DGE dW,
clamping with compensation) and the drop-in patch(model) / unpatch(model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kernels.fp4 import FP4_DIRECT, FP4_FULL, FP4Config, FP4Linear, fp4_linear, patch, unpatch
from kernels.fp4 import reference as R
from kernels.fp4.launch import fp8_scaled_mm, quantile_bounds
from kernels.runtime.testing import assert_close_lowp, generator

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

CONFIGS = {
    "full": FP4_FULL,
    "direct": FP4_DIRECT,
    "rows": FP4Config(weight_axis=1),
    "tensor-clamp": FP4Config(clamp="tensor"),
}


def _oracle(x, w, b, cfg: FP4Config, dy):
    """The layer in fp64 from the reference quantizer: (y, dx, dw, db)."""
    xf, wf = x.double(), w.double()
    lo = hi = None
    if cfg.clamp != "none":
        lo, hi = quantile_bounds(x, cfg.alpha, per_row=cfg.clamp == "row")
        n = x.shape[0]
        lo, hi = lo.expand(n), hi.expand(n)
    q = R.quantize_groups_ref(x, lo=lo, hi=hi)
    xq = R.dequantize_codes(q.codes, q.scale).double()
    res = torch.zeros_like(xf)
    if cfg.compensate:
        xc = torch.minimum(torch.maximum(x.float(), lo[:, None]), hi[:, None])
        res = (x.float() - xc).to(x.dtype).double()
    wq = R.fake_quantize_ref(w.float(), axis=0 if cfg.weight_axis == 0 else -1).double()
    y = xq @ wq.t() + res @ wf.t() + b.double()
    dx = dy.double() @ wq
    dw = dy.double().t() @ (xq + res)
    if cfg.dge:
        amax = w.float().abs().amax(0 if cfg.weight_axis == 0 else 1)
        sf = torch.exp2(R.pow2_exponent(amax).float())
        scaled = w.float() * (sf[None, :] if cfg.weight_axis == 0 else sf[:, None])
        dw = dw * R.dge_derivative_ref(scaled, cfg.k, cfg.dge_clamp).double()
    return y, dx, dw, dy.double().sum(0)


SHAPES = [
    pytest.param((37, 48, 29), id="M37-K48-N29"),
    pytest.param((2, 9, 64, 80), id="B2-T9-K64-N80"),
    pytest.param((8192, 4096, 4096), id="M8192-K4096-N4096", marks=GPU),
    pytest.param((16384, 512, 1376), id="M16384-K512-N1376", marks=GPU),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("shape", SHAPES)
def test_layer_against_fp64_oracle(shape, name: str, dtype: torch.dtype) -> None:
    """Output and the three gradients against the fp64 oracle by KERNELS.md's rule, the oracle
    rounded to the compute dtype being the low-precision twin (the FP8 GEMM returns bf16); the
    kernel path and the CPU reference path agree to the same rule."""
    cfg = CONFIGS[name]
    *lead, k, n = shape
    g = generator(f"layer{shape}{name}{dtype}")
    x = torch.randn(*lead, k, generator=g)
    x[..., ::13] *= 20.0  # outlier channels
    w = torch.randn(n, k, generator=g) * k**-0.5
    b = torch.randn(n, generator=g)
    dy = torch.randn(*lead, n, generator=g)
    x, w, b, dy = (t.to(dtype).to(DEVICE) for t in (x, w, b, dy))
    want = _oracle(x.reshape(-1, k), w, b, cfg, dy.reshape(-1, n))
    for use_kernels in (None, False) if DEVICE == "cpu" else (None,):
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        y = fp4_linear(xr, wr, br, cfg, use_kernels=use_kernels)
        assert y.shape == (*lead, n) and y.dtype == dtype
        got = (y, *torch.autograd.grad(y, (xr, wr, br), dy))
        for got_t, ref in zip(got, want, strict=True):
            got_t = got_t.detach().reshape(ref.shape)
            assert_close_lowp(
                got_t, ref, ref.to(torch.bfloat16), atol=1e-2 * float(ref.abs().max())
            )


def test_fp8_gemm_pads_odd_shapes() -> None:
    """fp8_scaled_mm pads M, K, N to multiples of 16 and cuts back: equal to the fp32 product of
    the decoded operands (exact products, fp32 sums, bf16 out)."""
    g = generator("fp8_pad")
    a = torch.randn(21, 37, generator=g).to(torch.float8_e4m3fn)
    bm = torch.randn(19, 37, generator=g).to(torch.float8_e4m3fn)
    sa, sb = torch.rand(21, generator=g) + 0.5, torch.rand(19, generator=g) + 0.5
    a, bm, sa, sb = (t.to(DEVICE) for t in (a, bm, sa, sb))
    y = fp8_scaled_mm(a.view(torch.uint8), sa, bm.view(torch.uint8), sb)
    ref = (a.double() * sa[:, None].double()) @ (bm.double() * sb[:, None].double()).t()
    assert y.shape == (21, 19) and y.dtype == torch.bfloat16
    assert_close_lowp(y, ref, ref.to(torch.bfloat16), atol=1e-3)


def test_compensation_brings_back_the_outliers() -> None:
    """With a few huge activations, clamping alone loses them; the residual product restores
    the exact contribution: FP4-full is nearer the true product than FP4-direct."""
    g = generator("compensation")
    x = torch.randn(64, 128, generator=g)
    x[:, 5] *= 100.0
    w = torch.randn(32, 128, generator=g) * 0.1
    x, w = x.to(DEVICE), w.to(DEVICE)
    exact = x.double() @ w.double().t()
    err = {
        name: float((fp4_linear(x, w, None, cfg).double() - exact).norm() / exact.norm())
        for name, cfg in (("full", FP4_FULL), ("direct", FP4_DIRECT))
    }
    assert err["full"] < err["direct"]


def test_config_and_input_errors() -> None:
    with pytest.raises(ValueError, match="compensation needs"):
        FP4Config(clamp="none", compensate=True)
    with pytest.raises(ValueError, match="weight_axis"):
        FP4Config(weight_axis=2)
    with pytest.raises(ValueError, match="k must be > 1"):
        FP4Config(k=1.0)
    x, w = torch.randn(4, 16, device=DEVICE), torch.randn(8, 16, device=DEVICE)
    with pytest.raises(TypeError, match="share a dtype"):
        fp4_linear(x, w.bfloat16())
    with pytest.raises(ValueError, match="features"):
        fp4_linear(x[:, :15], w)


def _tiny_llama():
    from replication.models import build_llama

    return build_llama("tiny", 97, seed=3).to(DEVICE)


def test_patch_turns_llama_linears_into_fp4_and_back() -> None:
    """patch: every projection of every block (7 a layer) becomes FP4Linear; embeddings and
    lm_head stay; parameters, state_dict keys and the optimizer's references are unchanged;
    the output changes (FP4 is lossy) but stays close; unpatch gives back the exact output."""
    model = _tiny_llama()
    ids = torch.randint(0, 97, (2, 24), generator=generator("patch_ids")).to(DEVICE)
    params_before = {n: p for n, p in model.named_parameters()}
    keys = list(model.state_dict())
    with torch.no_grad():
        before = model(ids).logits
    names = patch(model, use_kernels=False)
    assert len(names) == 7 * len(model.model.layers)
    assert "lm_head" not in names and all("embed" not in n for n in names)
    assert type(model.lm_head) is nn.Linear
    assert isinstance(model.model.layers[0].mlp.down_proj, FP4Linear)
    assert {n: p for n, p in model.named_parameters()} == params_before
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        during = model(ids).logits
    assert not torch.equal(during, before)
    cos = torch.nn.functional.cosine_similarity(during.flatten(), before.flatten(), dim=0)
    assert cos > 0.9
    assert unpatch(model) == names
    assert not any(isinstance(m, FP4Linear) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)


def test_patched_llama_trains() -> None:
    """Six AdamW steps on one batch through FP4 layers (reference path) lower the loss, and
    every parameter gets a finite gradient."""
    model = _tiny_llama()
    patch(model, FP4_FULL, use_kernels=False)
    ids = torch.randint(0, 97, (2, 32), generator=generator("train_ids")).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(6):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3


def test_layer_under_autocast_and_through_the_kernels() -> None:
    """Under bf16 autocast an FP4Linear computes in bf16 and returns its fp32 weight an fp32
    gradient; the kernel path (interpreter on the CPU) equals the reference path there."""
    g = generator("autocast")
    lin = nn.Linear(48, 32).to(DEVICE)
    patch(nn.Sequential(lin))
    x = torch.randn(20, 48, generator=g).to(DEVICE)
    outs = []
    for use_kernels in (None, False):
        lin.fp4_use_kernels = use_kernels
        lin.zero_grad()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            y = lin(x)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        assert lin.weight.grad.dtype == torch.float32
        outs.append((y.detach().clone(), lin.weight.grad.clone()))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("axis", [0, 1])
def test_weight_bytes_decode_to_the_fp4_weight(axis: int) -> None:
    """The e4m3 bytes and row multipliers handed to _scaled_mm decode to exactly the FP4 weight
    (channel-wise: through one power-of-two tensor scale; columns spanning 2^12 stay exact),
    and sf is the quantizer's scale (amax·sf ∈ (3, 6])."""
    from kernels.fp4.launch import quantize_weight

    g = generator(f"weight_bytes{axis}")
    w = torch.randn(40, 96, generator=g) * torch.exp2(torch.linspace(-12, 0, 96))[None, :]
    w = w.bfloat16().to(DEVICE)
    for use_kernels in (True, False) if DEVICE == "cpu" else (True,):
        qw = quantize_weight(w, axis, use_kernels)
        decoded = qw.bytes8.view(torch.float8_e4m3fn).float() * qw.row_scale[:, None]
        want = R.fake_quantize_ref(w.float(), axis=0 if axis == 0 else -1)
        assert torch.equal(decoded, want)
        assert torch.equal(qw.dequant, want.bfloat16())
        amax = w.float().abs().amax(0 if axis == 0 else 1)
        assert ((amax * qw.sf > 3) & (amax * qw.sf <= 6)).all()
