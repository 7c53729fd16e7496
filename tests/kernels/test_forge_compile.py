"""`torch.compile` of a model whose nn.Linears are FORGE-managed (kernels/forge/ops.py).

The compiled model must train exactly as the eager one: its graph calls `forge::linear`, whose
registered backward steps each weight through the fused kernel (`forge::linear_backward`, which
reads W and declares only the layer's zero-size update token as mutated; ops.py says why). On
the CPU the "eager" and "aot_eager" backends run it; inductor runs on the GPU (`-m gpu`).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from functorch.compile import make_boxed_func
from torch import nn
from torch._dynamo.backends.common import aot_autograd

from kernels.forge import ForgeAdamW, reference
from kernels.forge.kernels import INTERPRET
from kernels.runtime.testing import rel_err, seed_for

KW = {"lr": 1e-2, "betas": (0.9, 0.99), "weight_decay": 0.1}
DEVICES = [
    pytest.param("cpu", id="interpreter"),
    pytest.param("cuda", id="gpu", marks=pytest.mark.gpu),
]


def need(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if device == "cpu" and not INTERPRET:
        pytest.skip("CPU cases run the kernel through Triton's interpreter (TRITON_INTERPRET=1)")


def mlp(seed: int, width: int = 37, hidden: int = 53, first_bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(width, hidden, bias=first_bias),
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
    name: str,
    backend,
    device: str,
    steps: int = 3,
    autocast: bool = False,
    first_bias: bool = True,
    **opt_kw,
) -> tuple[nn.Module, nn.Module, list[float], list[float]]:
    """`steps` steps of an eager FORGE model and of its torch.compile'd twin, same batches."""
    eager = mlp(seed_for(name), first_bias=first_bias).to(device)
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


@pytest.mark.parametrize("device", DEVICES)
def test_backward_graph_writes_no_input_that_requires_grad(device: str) -> None:
    """The joint graph must not copy a new W back into the weight Parameter: torch 2.11's
    AOTAutograd traces that copy with grad on and fails ("a leaf Variable that requires grad is
    being used in an in-place operation"), which torch 2.13 hides. What the backward graph may
    write back is each managed layer's update token, and it must, or an op whose outputs are
    unused (this first layer: no bias, input without grad) would be dropped; that layer must
    train as in eager mode."""
    need(device)
    torch._dynamo.reset()
    seen: dict[str, Any] = {}

    def keep(kind: str):
        def compiler(gm: torch.fx.GraphModule, example_inputs):
            seen[kind] = gm
            return make_boxed_func(gm)

        return compiler

    aot = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"))

    def backend(gm: torch.fx.GraphModule, example_inputs):
        seen["inputs"] = example_inputs
        return aot(gm, example_inputs)

    name = "compile-graph-writes"
    eager, comp, loss_e, loss_c = train_both(name, backend, device, steps=2, first_bias=False)
    primals = [n.name for n in seen["forward"].graph.find_nodes(op="placeholder")]
    assert len(primals) == len(seen["inputs"])  # forward inputs = dynamo's, in order
    requires_grad = {p: t.requires_grad for p, t in zip(primals, seen["inputs"], strict=True)}
    written = [
        node.args[0].name
        for node in seen["backward"].graph.find_nodes(
            op="call_function", target=torch.ops.aten.copy_.default
        )
    ]
    assert len(written) == 3  # one token a managed layer
    assert all(name in requires_grad and not requires_grad[name] for name in written), written
    tol = 1e-6 if device == "cpu" else 1e-5
    assert loss_c == pytest.approx(loss_e, rel=tol)
    assert rel_err(comp[0].weight, eager[0].weight) <= tol
    start = mlp(seed_for(name), first_bias=False)[0].weight.to(device)
    assert not torch.equal(comp[0].weight, start)  # it trained


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
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "autocast"])
def test_gpu_compiled_model_trains_like_eager(backend: str, autocast: bool) -> None:
    """On the GPU, through AOTAutograd alone and through inductor, whose own kernels for
    GELU/LayerNorm sum in another order: GPU model tolerance (1e-4, as test_forge_optimizer's
    GPU cases)."""
    need("cuda")
    torch._dynamo.reset()
    eager, comp, loss_e, loss_c = train_both(
        f"gpu-{backend}-{autocast}", backend, "cuda", steps=4, autocast=autocast
    )
    tol = 1e-4 if not autocast else 1e-2
    assert loss_c == pytest.approx(loss_e, rel=tol)
    for (n, a), (_, b) in zip(eager.named_parameters(), comp.named_parameters(), strict=True):
        assert rel_err(b, a) <= tol, n
