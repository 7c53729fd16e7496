"""POETLinear, patch() and POETAdamW: the drop-in against a dense reference, the spectrum kept,
merges that keep the function, and a patched HF Llama that trains.

The layer runs through the Triton kernels (interpreter in CI) and through the PyTorch path; both
are compared with x·W_effᵀ where W_eff = R·W0·P is materialised and differentiated by autograd.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kernels.poet import POETAdamW, POETLinear, patch, poet_layers
from kernels.poet import reference as ref
from kernels.poet.modules import block_for
from kernels.runtime.testing import generator

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _layer(n_in: int, n_out: int, block: int, name: str, *, theta_std: float, **kw) -> POETLinear:
    gen = generator(name)
    layer = POETLinear(n_in, n_out, block, generator=gen, **kw).to(DEVICE)
    with torch.no_grad():
        layer.theta_r.copy_(torch.randn(layer.theta_r.shape, generator=gen) * theta_std)
        layer.theta_p.copy_(torch.randn(layer.theta_p.shape, generator=gen) * theta_std)
    return layer


def _dense_reference(layer: POETLinear, x: torch.Tensor):
    """(y, θ_r, θ_p) by the dense float64 path: θ → Q → R (reference CNP) → W_eff → x·W_effᵀ."""
    tr = layer.theta_r.detach().double().cpu().requires_grad_(True)
    tp = layer.theta_p.detach().double().cpu().requires_grad_(True)
    r = ref.cayley_neumann(ref.skew_from_vec(tr, layer.block_out), layer.c)
    p = ref.cayley_neumann(ref.skew_from_vec(tp, layer.block_in), layer.c)
    w_eff = ref.effective_weight(
        layer.w0p.double().cpu(), r, p, layer.perm_in.long().cpu(), layer.perm_out.long().cpu()
    )
    y = x.double().cpu() @ w_eff.t()
    if layer.bias is not None:
        y = y + layer.bias.double().cpu()
    return y, tr, tp


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a64 - b64).abs().max() / b64.abs().max().clamp_min(1e-30))


def test_block_for_picks_the_largest_divisor() -> None:
    assert [block_for(d, 256) for d in (4096, 14336, 1024)] == [256, 256, 256]
    assert block_for(1376, 256) == 172  # 1376 = 8 · 172
    assert block_for(40, 16) == 10
    assert block_for(97, 16) == 1  # a prime: no rotation can mix its features


@pytest.mark.parametrize("use_kernels", [True, False])
@pytest.mark.parametrize(
    ("mode", "n_out", "blocks"),
    [("fast", 80, (24, 20)), ("mem", 80, (24, 20)), ("fast", 48, (24, 24))],
)
def test_layer_matches_dense_reference(
    use_kernels: bool, mode: str, n_out: int, blocks: tuple[int, int]
) -> None:
    """Odd shapes: 72 → 80 features (blocks of 24 and 20: two batches of blocks) and 72 → 48
    (24 both sides: one batch), block 24 asked, 2×19 tokens."""
    layer = _layer(
        72, n_out, 24, f"dense{use_kernels}{mode}{n_out}", theta_std=0.05, bias=True, mode=mode
    )
    layer.use_kernels = use_kernels
    with torch.no_grad():
        layer.bias.normal_()
    gen = generator("x" + mode)
    x = torch.randn(2, 19, 72, generator=gen).to(DEVICE).requires_grad_(True)
    dy = torch.randn(2, 19, n_out, generator=gen).to(DEVICE)
    y = layer(x)
    (y * dy).sum().backward()
    x64 = x.detach().double().cpu().requires_grad_(True)
    y64, tr, tp = _dense_reference(layer, x64)
    (y64 * dy.double().cpu()).sum().backward()
    assert (layer.block_in, layer.block_out) == blocks
    assert _rel(y, y64) < 1e-5
    assert _rel(x.grad, x64.grad) < 1e-5
    grad_r, grad_p = layer.theta_grads()
    assert _rel(grad_r, tr.grad) < 1e-5
    assert _rel(grad_p, tp.grad) < 1e-5
    assert layer.w0p.grad is None and not layer.w0p.requires_grad  # W0 is frozen


@pytest.mark.parametrize("q_norm", [0.01, 0.05])
def test_singular_values_of_w_eff_are_those_of_w0(q_norm: float) -> None:
    """σ(R·W0·P) = σ(W0) up to the polynomial's orthogonality error (‖Q‖ ≤ 0.05: 4·‖Q‖⁶)."""
    layer = _layer(96, 64, 32, f"svd{q_norm}", theta_std=1.0)
    with torch.no_grad():  # scale every block's Q to spectral norm q_norm
        for theta, b in ((layer.theta_r, layer.block_out), (layer.theta_p, layer.block_in)):
            q = ref.skew_from_vec(theta.double().cpu(), b)
            theta.mul_((q_norm / torch.linalg.matrix_norm(q, ord=2))[:, None].float().to(DEVICE))
    w_eff = layer.effective_weight().double()
    w0 = layer.base_weight().double()
    s_eff, s0 = torch.linalg.svdvals(w_eff), torch.linalg.svdvals(w0)
    assert float(((s_eff - s0).abs() / s0).max()) < 1e-3
    assert _rel(w_eff, w0) > q_norm / 10  # the weight did move: the test is not vacuous


def test_zero_theta_is_the_base_linear_map() -> None:
    gen = generator("zero")
    lin = nn.Linear(48, 40, bias=True).to(DEVICE)
    layer = POETLinear.from_linear(lin, 16, generator=gen)
    x = torch.randn(7, 48, generator=gen).to(DEVICE)
    assert _rel(layer(x), lin(x)) < 1e-6


@pytest.mark.parametrize("use_kernels", [True, False])
def test_merge_keeps_the_function_and_resets(use_kernels: bool) -> None:
    layer = _layer(48, 40, 16, f"merge{use_kernels}", theta_std=0.05, use_kernels=use_kernels)
    x = torch.randn(11, 48, generator=generator("mx")).to(DEVICE)
    with torch.no_grad():
        before = layer(x)
    perms = (layer.perm_in.clone(), layer.perm_out.clone())
    layer.merge(generator("newperm"))
    with torch.no_grad():
        after = layer(x)
    assert _rel(after, before) < 1e-5
    assert not torch.equal(layer.perm_in, perms[0]) and not torch.equal(layer.perm_out, perms[1])
    assert torch.count_nonzero(layer.theta_r) == 0 and torch.count_nonzero(layer.theta_p) == 0
    assert sorted(layer.perm_in.tolist()) == list(range(48))


def test_patch_replaces_every_linear_but_the_head() -> None:
    from replication.models import build_llama

    model = build_llama("tiny", 97, seed=0).to(DEVICE)
    ids = torch.randint(0, 97, (2, 12), generator=generator("ids")).to(DEVICE)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    n_linear = sum(type(m) is nn.Linear for m in model.modules())
    names = patch(model, 16, use_kernels=False)
    assert len(names) == n_linear - 1 and "lm_head" not in names
    assert type(model.lm_head) is nn.Linear
    assert len(poet_layers(model)) == len(names)
    with torch.no_grad():  # θ = 0: R = P = I, the model computes what it did
        assert _rel(model(input_ids=ids).logits, logits) < 1e-5
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        patch(nn.Sequential(nn.ReLU()))


def test_poet_adamw_trains_merges_and_resets_state() -> None:
    from replication.models import build_llama

    model = build_llama("tiny", 97, seed=1).to(DEVICE)
    patch(model, 16, use_kernels=False)
    opt = POETAdamW(model, lr=3e-3, poet_lr=3e-3, merge_interval=3)
    groups = opt.param_groups
    assert groups[0]["poet"] and groups[0]["weight_decay"] == 0.0
    assert all(p.dtype == torch.float32 for p in groups[0]["params"])
    n_theta = len(poet_layers(model))  # one flat θ per layer
    assert len(groups[0]["params"]) == n_theta
    ids = torch.randint(0, 97, (4, 16), generator=generator("train")).to(DEVICE)
    losses = []
    for step in range(6):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        theta = groups[0]["params"][0]
        if step == 1:
            assert theta in opt.state and torch.count_nonzero(theta) > 0
        if step == 2:  # the third step merged: θ back to 0, its state dropped
            assert opt.merges == 1 and theta not in opt.state
            assert torch.count_nonzero(theta) == 0
    assert opt.merges == 2
    assert losses[-1] < losses[0] - 0.05


def test_layer_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="mode"):
        POETLinear(16, 16, 16, mode="slow")
    layer = POETLinear(16, 16, 16).to(DEVICE)  # kernels take CUDA tensors on a GPU host
    with pytest.raises(ValueError, match="features"):
        layer.use_kernels = True
        layer(torch.zeros(2, 17, device=layer.w0p.device))
