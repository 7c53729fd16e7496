"""The drop-in FORGE optimizers against torch's own, on an MLP and a tiny Hugging Face Llama.

On the CPU the fused layers run the Triton kernel through the interpreter; `-m gpu` runs the
same functions on CUDA (bf16 autocast included).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kernels.forge import ForgeAdamW, ForgeLion, ForgeSGD, Rule, StepScalars, reference
from kernels.forge.kernels import INTERPRET
from kernels.runtime.testing import rel_err, seed_for

DEVICES = [
    pytest.param("cpu", id="interpreter"),
    pytest.param("cuda", id="gpu", marks=pytest.mark.gpu),
]


def need(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if device == "cpu" and not INTERPRET:
        pytest.skip("CPU cases run the kernel through Triton's interpreter (TRITON_INTERPRET=1)")


def mlp(seed: int, width: int = 37) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(width, 53),
        nn.GELU(),
        nn.Linear(53, 29, bias=False),
        nn.LayerNorm(29),
        nn.Linear(29, 11),
    )


def assert_same_params(a: nn.Module, b: nn.Module, tol: float = 1e-5) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert rel_err(pa, pb) <= tol, name


def model_tol(device: str) -> float:
    """Whole-model comparisons after a few steps: 1e-5 on the CPU. On the GPU the two sides'
    matmuls and attention kernels differ in summation order, and Adam amplifies differences in
    near-zero gradients, so parameters the fused layers feed (embeddings) drift to ~2e-5."""
    return 1e-5 if device == "cpu" else 1e-4


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 matmuls in full precision on the GPU, for both sides of each comparison."""
    with reference.tf32_off():
        yield


@pytest.mark.parametrize("device", DEVICES)
def test_adamw_with_scheduler_matches_torch(device: str) -> None:
    """ForgeAdamW + a LR scheduler == torch AdamW(foreach=False) + the same scheduler."""
    need(device)
    seed = seed_for(f"adamw-mlp-{device}")
    model = mlp(seed).to(device)
    twin = copy.deepcopy(model)
    opt = ForgeAdamW(model, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    ref = torch.optim.AdamW(
        twin.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, foreach=False
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    sched_ref = torch.optim.lr_scheduler.LambdaLR(ref, lambda s: 1.0 / (1 + s))
    fused = {id(p) for p in opt.fused_parameters}
    assert len(fused) == 3
    g = torch.Generator().manual_seed(seed)
    for _ in range(4):
        x = torch.randn(23, 37, generator=g).to(device)
        y = torch.randn(23, 11, generator=g).to(device)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        for p in model.parameters():  # fused weights never get a gradient; the rest do
            assert (p.grad is None) == (id(p) in fused)
        opt.step()
        opt.zero_grad()
        sched.step()
        loss_ref = ((twin(x) - y) ** 2).mean()
        loss_ref.backward()
        ref.step()
        ref.zero_grad()
        sched_ref.step()
        assert abs(loss.item() - loss_ref.item()) <= 1e-5 * abs(loss_ref.item())
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 5)
    assert_same_params(model, twin)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_torch(device: str, nesterov: bool) -> None:
    need(device)
    seed = seed_for(f"sgd-{device}-{nesterov}")
    model = mlp(seed).to(device)
    twin = copy.deepcopy(model)
    kw = {"lr": 5e-2, "momentum": 0.9, "weight_decay": 0.01, "nesterov": nesterov}
    kw["dampening"] = 0.0 if nesterov else 0.2
    opt = ForgeSGD(model, **kw)
    ref = torch.optim.SGD(twin.parameters(), foreach=False, **kw)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        x = torch.randn(19, 37, generator=g).to(device)
        for m, o in ((model, opt), (twin, ref)):
            m(x).square().mean().backward()
            o.step()
            o.zero_grad()
    assert_same_params(model, twin)


@pytest.mark.parametrize("device", DEVICES)
def test_lion_matches_reference_rule(device: str) -> None:
    """ForgeLion == the reference Lion rule applied to autograd's gradients (torch has no Lion)."""
    need(device)
    seed = seed_for(f"lion-{device}")
    model = mlp(seed).to(device)
    twin = copy.deepcopy(model)
    opt = ForgeLion(model, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    states = {p: [torch.zeros_like(p)] for p in twin.parameters()}
    sc = StepScalars.lion(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        x = torch.randn(21, 37, generator=g).to(device)
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        twin(x).square().mean().backward()
        with torch.no_grad():
            for p in twin.parameters():
                reference.apply_rule_(Rule.LION, sc, p, p.grad, states[p])
                p.grad = None
    # Lion moves every weight by ±lr: a sign flip at an exact tie would show as 2·lr.
    for pa, pb in zip(model.parameters(), twin.parameters(), strict=True):
        assert (pa - pb).abs().max().item() <= 1e-5


def tiny_llama(seed: int, tie: bool):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_adamw_on_hf_llama_matches_torch(device: str, tie: bool) -> None:
    """A random-init transformers Llama trains the same under ForgeAdamW and torch AdamW."""
    need(device)
    seed = seed_for(f"llama-{device}-{tie}")
    model = tiny_llama(seed, tie).to(device)
    twin = copy.deepcopy(model)
    opt = ForgeAdamW(model, lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    names = {n for n, _ in opt.fused_modules()}
    assert len([n for n in names if ".layers." in n]) == 14  # q,k,v,o,gate,up,down x 2
    # A tied lm_head shares the embedding matrix: it stays with opt.step().
    assert ("lm_head" in names) == (not tie)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        ids = torch.randint(0, 97, (2, 11), generator=g).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss_ref = twin(input_ids=ids, labels=ids).loss
        loss_ref.backward()
        ref.step()
        ref.zero_grad()
        assert abs(loss.item() - loss_ref.item()) <= 1e-5 * abs(loss_ref.item())
    assert_same_params(model, twin, tol=model_tol(device))


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_bf16_matches_reference_backend(device: str) -> None:
    """Under bf16 autocast the GEMMs read bf16 copies; the fused step equals the reference's."""
    need(device)
    seed = seed_for(f"autocast-{device}")
    model = mlp(seed).to(device)
    twin = copy.deepcopy(model)
    opt = ForgeAdamW(model, lr=1e-2)
    ref = ForgeAdamW(twin, lr=1e-2, backend="reference")
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.randn(33, 37, generator=g).to(device)
        for m, o in ((model, opt), (twin, ref)):
            with torch.autocast(device, dtype=torch.bfloat16):
                out = m(x)
            assert out.dtype == torch.bfloat16
            out.float().square().mean().backward()
            o.step()
            o.zero_grad()
    assert_same_params(model, twin, tol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_model_stochastic_rounding_matches_reference_backend(device: str) -> None:
    """bf16 weights, fp32 states: the fused path rounds like the reference (same random bits)."""
    need(device)
    seed = seed_for(f"bf16model-{device}")
    model = mlp(seed).to(device, torch.bfloat16)
    twin = copy.deepcopy(model)
    opt = ForgeAdamW(model, lr=1e-2, seed=3)
    ref = ForgeAdamW(twin, lr=1e-2, seed=3, backend="reference")
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.randn(17, 37, generator=g).to(device, torch.bfloat16)
        for m, o in ((model, opt), (twin, ref)):
            m(x).float().square().mean().backward()
            o.step()
            o.zero_grad()
    for p in opt.state:
        assert opt.state[p]["exp_avg"].dtype == torch.float32
    for pa, pb in zip(model.parameters(), twin.parameters(), strict=True):
        # Same random bits, so the roundings agree except where the fp32 values before
        # rounding (GEMM summation order) straddle a boundary or a near-zero gradient's sign
        # flips Adam's step (at most 2·lr a step).
        a, b = pa.float(), pb.float()
        assert (a != b).float().mean().item() < 0.1
        assert rel_err(a, b) <= 1e-2
        ulp = torch.exp2(torch.frexp(b.abs())[1].float() - 8)
        assert ((a - b).abs() <= ulp + 2 * 2 * 1e-2).all()


def test_state_dict_round_trip_continues_identically() -> None:
    """Save after two steps, load into a fresh model + optimizer: the next step agrees."""
    seed = seed_for("state-dict")
    model = mlp(seed)
    opt = ForgeAdamW(model, lr=1e-2, backend="reference")
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(9, 37, generator=g) for _ in range(3)]
    for x in xs[:2]:
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    clone = copy.deepcopy(model)
    opt2 = ForgeAdamW(clone, lr=1e-2, backend="reference")
    opt2.load_state_dict(opt.state_dict())
    for m, o in ((model, opt), (clone, opt2)):
        m(xs[2]).square().mean().backward()
        o.step()
        o.zero_grad()
    for pa, pb in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert int(opt2.state[clone[0].weight]["step"]) == 3


@pytest.mark.parametrize("device", DEVICES)
def test_reloaded_states_are_the_ones_the_fused_layers_step(device: str) -> None:
    """load_state_dict replaces the fused layers' state tensors under their bound launchers:
    the next steps must read and update the new ones (torch AdamW, same data, as the oracle)."""
    need(device)
    seed = seed_for(f"reload-{device}")
    model = mlp(seed).to(device)
    twin = copy.deepcopy(model)
    opt = ForgeAdamW(model, lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    g = torch.Generator().manual_seed(seed)
    for i in range(4):
        if i == 2:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        x = torch.randn(13, 37, generator=g).to(device)
        for m, o in ((model, opt), (twin, ref)):
            m(x).square().mean().backward()
            o.step()
            o.zero_grad()
    assert_same_params(model, twin, tol=model_tol(device))
    for pa, pb in zip(model.parameters(), twin.parameters(), strict=True):
        for name in ("exp_avg", "exp_avg_sq"):
            assert rel_err(opt.state[pa][name], ref.state[pb][name]) <= model_tol(device)


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_learning_rate_changed_in_place_reaches_fused_layers(device: str) -> None:
    """A tensor lr edited in place between steps is read afresh (not taken from the per-step
    scalar cache): the fused layers follow it like torch AdamW follows a float lr."""
    need(device)
    seed = seed_for(f"tensor-lr-{device}")
    model = mlp(seed).to(device)
    twin = copy.deepcopy(model)
    lr = torch.tensor(1e-2)
    opt = ForgeAdamW(model, lr=lr, weight_decay=0.1)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    g = torch.Generator().manual_seed(seed)
    for value in (1e-2, 3e-3, 3e-2):
        lr.fill_(value)
        ref.param_groups[0]["lr"] = value
        x = torch.randn(13, 37, generator=g).to(device)
        for m, o in ((model, opt), (twin, ref)):
            m(x).square().mean().backward()
            o.step()
            o.zero_grad()
    assert_same_params(model, twin, tol=model_tol(device))


def test_zero_grad_keeps_torch_semantics() -> None:
    """zero_grad skips torch's pass when no parameter has a gradient, and otherwise zeroes or
    drops the gradients of the parameters opt.step() steps (fused weights never have one)."""
    model = mlp(seed_for("zero-grad"))
    opt = ForgeAdamW(model, backend="reference")
    fused = {id(p) for p in opt.fused_parameters}
    model(torch.randn(5, 37)).square().mean().backward()
    others = [p for p in model.parameters() if id(p) not in fused]
    assert others and all(p.grad is not None and p.grad.abs().sum() > 0 for p in others)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in others)
    assert all(p.grad is None for p in opt.fused_parameters)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    opt.step()
    model(torch.randn(5, 37)).square().mean().backward()  # a new step is allowed after it
    opt.step()


def test_refuses_gradient_accumulation() -> None:
    model = mlp(seed_for("accum"))
    opt = ForgeAdamW(model, backend="reference")
    x = torch.randn(5, 37)
    model(x).sum().backward()
    with pytest.raises(RuntimeError, match="gradient accumulation"):
        model(x)  # a second forward with grad before opt.step()
    opt.step()
    opt.zero_grad()
    model(x).sum().backward()  # after step() the loop goes on
    opt.step()


def test_refuses_second_backward_through_the_same_graph() -> None:
    model = mlp(seed_for("twice"))
    opt = ForgeAdamW(model, backend="reference")
    loss = model(torch.randn(5, 37)).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second gradient"):
        loss.backward()
    opt.step()


def test_refuses_a_layer_called_twice_per_step() -> None:
    lin = nn.Linear(8, 8)
    model = nn.Sequential(lin)
    opt = ForgeAdamW(model, backend="reference")
    assert opt.fused_parameters == [lin.weight]
    with pytest.raises(RuntimeError, match="more than once per step"):
        lin(lin(torch.randn(3, 8)))


def test_refuses_global_norm_clipping() -> None:
    model = mlp(seed_for("clip"))
    opt = ForgeAdamW(model, backend="reference")
    model(torch.randn(5, 37)).sum().backward()
    with pytest.raises(RuntimeError, match="global-norm gradient clipping"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    with pytest.raises(NotImplementedError, match="clipping"):
        opt.clip_grad_norm_(1.0)
    with pytest.raises(NotImplementedError, match="clipping"):
        ForgeAdamW(mlp(1), max_grad_norm=1.0)
    # Parameters FORGE does not manage can still be clipped.
    norm = torch.nn.utils.clip_grad_norm_(model[3].parameters(), 1.0)
    assert torch.isfinite(norm)


def test_no_grad_forward_is_plain_and_uncounted() -> None:
    model = mlp(seed_for("eval"))
    opt = ForgeAdamW(model, backend="reference")
    x = torch.randn(4, 37)
    with torch.no_grad():
        y0 = model(x)
        y1 = model(x)  # evaluation forwards do not count as uses
    assert torch.equal(y0, y1)
    model(x).sum().backward()
    opt.step()


def test_refuses_what_it_cannot_take() -> None:
    with pytest.raises(TypeError, match="the model"):
        ForgeAdamW(list(mlp(2).parameters()))
    with pytest.raises(ValueError, match="momentum"):
        ForgeSGD(mlp(2), momentum=0.0)
    opt = ForgeAdamW(mlp(2), backend="reference")
    with pytest.raises(NotImplementedError, match="from the model"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})


def test_release_restores_plain_linears() -> None:
    model = mlp(seed_for("release"))
    opt = ForgeAdamW(model, backend="reference")
    opt.release()
    model(torch.randn(3, 37)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_layers_turn_plain_when_the_optimizer_is_gone() -> None:
    model = mlp(seed_for("gone"))
    ForgeAdamW(model, backend="reference")  # not kept: collected at once
    model(torch.randn(3, 37)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_scheduler_after_load_state_dict_reaches_fused_layers() -> None:
    """load_state_dict replaces the group dicts; the fused update must read the new ones."""
    model = mlp(seed_for("groups"))
    opt = ForgeAdamW(model, lr=1e-2, backend="reference")
    opt.load_state_dict(opt.state_dict())
    opt.param_groups[0]["lr"] = 0.0
    opt.param_groups[0]["weight_decay"] = 0.0
    before = model[0].weight.detach().clone()
    model(torch.randn(3, 37)).sum().backward()
    assert torch.equal(model[0].weight, before)  # lr 0: the fused step did not move it


@pytest.mark.parametrize("device", DEVICES)
def test_a_dropped_optimizer_frees_its_states_while_the_model_lives(device: str) -> None:
    """The fused layers' bound launchers hold the states; they go with the optimizer, not with
    the model (whose layers keep the optimizer's patched forward)."""
    import gc
    import weakref as wr

    need(device)
    model = mlp(seed_for(f"drop-opt-{device}")).to(device)
    opt = ForgeAdamW(model)
    model(torch.randn(5, 37).to(device)).square().mean().backward()
    opt.step()
    states = [wr.ref(opt.state[p]["exp_avg"]) for p in opt.fused_parameters]
    gc.disable()
    try:
        del opt
        assert all(ref() is None for ref in states)
    finally:
        gc.enable()
    model(torch.randn(5, 37).to(device)).sum().backward()  # plain layers now
    assert all(p.grad is not None for p in model.parameters())


def test_a_dropped_model_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle through the patched forward: dropping the model frees it at once."""
    import gc
    import weakref as wr

    gc.disable()
    try:
        model = mlp(seed_for("cycle"))
        opt = ForgeAdamW(model, backend="reference")
        ref = wr.ref(model[0].weight)
        del model, opt
        assert ref() is None
    finally:
        gc.enable()
