"""`torch.compile` of a model whose nn.Linears are FORGE-managed (kernels/forge/ops.py).

The compiled model must train exactly as the eager one: its graph calls `forge::linear`, whose
registered backward steps each weight through the fused kernel (`forge::linear_backward`,
declared to mutate the weight). On the CPU the "eager" and "aot_eager" backends run it (the
latter functionalizes the mutation: the op gets a copy of W and the copy is written back);
inductor runs on the GPU (`-m gpu`).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kernels.forge import ForgeAdamW, reference
from kernels.forge.kernels import INTERPRET
from kernels.runtime.testing import rel_err, seed_for

KW = {"lr": 1e-2, "betas": (0.9, 0.99), "weight_decay": 0.1}


def mlp(seed: int, width: int = 37, hidden: int = 53) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Linear(hidden, 29, bias=False),
        nn.LayerNorm(29),
        nn.Linear(29, 11),
    )


def recording(backend: str, graphs: list[str]):
    """A dynamo backend that keeps each graph's code and hands it to `backend`."""
    inner = torch._dynamo.lookup_backend(backend)

    def compile_fn(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm.code)
        return inner(gm, example_inputs)

    return compile_fn


def train_both(
    name: str, backend, device: str, steps: int = 3, autocast: bool = False, **opt_kw
) -> tuple[nn.Module, nn.Module, list[float], list[float]]:
    """`steps` steps of an eager FORGE model and of its torch.compile'd twin, same batches."""
    eager = mlp(seed_for(name)).to(device)
    comp = copy.deepcopy(eager)
    opt_e = ForgeAdamW(eager, **KW, **opt_kw)
    opt_c = ForgeAdamW(comp, **KW, **opt_kw)
    compiled = torch.compile(comp, backend=backend, fullgraph=True)
    g = torch.Generator().manual_seed(seed_for(name))
    losses: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps):
        x = torch.randn(13, 37, generator=g).to(device)
        for model, opt, out in ((eager, opt_e, losses[0]), (compiled, opt_c, losses[1])):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                y = model(x)
            loss = y.float().square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(loss.item())
    return eager, comp, *losses


@pytest.fixture(autouse=True)
def _exact_fp32():
    with reference.tf32_off():
        yield


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "autocast"])
def test_compiled_model_trains_like_eager(backend: str, autocast: bool) -> None:
    """fullgraph compile (no graph break), the forge ops in the graph, weights stepped inside
    the compiled backward exactly as in eager mode (never given a .grad)."""
    if not INTERPRET:
        pytest.skip("CPU cases run the kernel through Triton's interpreter (TRITON_INTERPRET=1)")
    torch._dynamo.reset()
    graphs: list[str] = []
    name = f"compile-{backend}-{autocast}"
    eager, comp, loss_e, loss_c = train_both(
        name, recording(backend, graphs), "cpu", autocast=autocast
    )
    assert graphs and all("forge.linear" in code for code in graphs)
    assert loss_c == pytest.approx(loss_e, rel=1e-6)
    for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters(), strict=True):
        assert rel_err(b, a) <= 1e-6, n
    assert comp[0].weight.grad is None
    assert not torch.equal(comp[0].weight, mlp(seed_for(name))[0].weight)  # it trained


def test_compiled_model_with_capturable_optimizer() -> None:
    """The ops are opaque: a capturable optimizer (device scalars) works under them too."""
    if not INTERPRET:
        pytest.skip("CPU cases run the kernel through Triton's interpreter (TRITON_INTERPRET=1)")
    torch._dynamo.reset()
    eager, comp, loss_e, loss_c = train_both("compile-capturable", "aot_eager", "cpu", steps=2,
                                             capturable=True)  # fmt: skip
    assert loss_c == pytest.approx(loss_e, rel=1e-6)
    for a, b in zip(eager.parameters(), comp.parameters(), strict=True):
        assert rel_err(b, a) <= 1e-6


def test_compiled_model_refuses_a_second_backward() -> None:
    """A second backward through one compiled graph is refused (autograd's check of the saved
    W fires before FORGE's own accumulation guard: the compiled graph saved W)."""
    torch._dynamo.reset()
    model = mlp(seed_for("compile-twice"))
    opt = ForgeAdamW(model, backend="reference", **KW)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    loss = compiled(torch.randn(5, 37)).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"second gradient|modified by an inplace operation"):
        loss.backward()
    opt.step()


@pytest.mark.gpu
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "autocast"])
def test_inductor_compiled_model_trains_like_eager(autocast: bool) -> None:
    """inductor on the GPU: its own kernels for GELU/LayerNorm sum in another order, so the
    comparison allows GPU model tolerance (1e-4, as test_forge_optimizer's GPU cases)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch._dynamo.reset()
    eager, comp, loss_e, loss_c = train_both(
        f"inductor-{autocast}", "inductor", "cuda", steps=4, autocast=autocast
    )
    tol = 1e-4 if not autocast else 1e-2
    assert loss_c == pytest.approx(loss_e, rel=tol)
    for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters(), strict=True):
        assert rel_err(b, a) <= tol, n
