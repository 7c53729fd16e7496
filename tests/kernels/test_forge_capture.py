"""FORGE's capturable mode and whole-step CUDA graph capture.

On the CPU (interpreter) a capturable optimizer, whose step counts and scalars live in device
tensors and which the fused kernel reads through a pointer, must step like the host-scalar
one; on the GPU (`-m gpu`) N replays of a captured step must equal N eager steps, for FORGE
and for torch's fused AdamW (`kernels.runtime.graphs.capture_step`).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kernels.forge import ForgeAdamW, ForgeLion, ForgeSGD, capture, reference
from kernels.forge.kernels import INTERPRET
from kernels.runtime.graphs import CapturedStep, capture_step
from kernels.runtime.testing import rel_err, seed_for

# betas=(0.9, 0.99): the CPU interpreter hands a kernel its float arguments in float64, so the
# host-scalar kernel forms 1 - beta2 in float64 where the device-scalar kernel (like both on
# the GPU) forms it from an fp32 beta2: with 0.999 that alone moves Adam's update by 5e-5.
OPTIMIZERS = [
    pytest.param(ForgeAdamW, {"lr": 1e-2, "betas": (0.9, 0.99), "weight_decay": 0.1}, id="adamw"),
    pytest.param(ForgeSGD, {"lr": 5e-2, "weight_decay": 0.01, "dampening": 0.2}, id="sgd"),
    pytest.param(ForgeSGD, {"lr": 5e-2, "weight_decay": 0.01, "nesterov": True}, id="nesterov"),
    pytest.param(ForgeLion, {"lr": 1e-3, "weight_decay": 0.1}, id="lion"),
]


def need_interpreter() -> None:
    if not INTERPRET:
        pytest.skip("CPU cases run the kernel through Triton's interpreter (TRITON_INTERPRET=1)")


def need_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def mlp(seed: int, width: int = 37, hidden: int = 53) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Linear(hidden, 29, bias=False),
        nn.LayerNorm(29),
        nn.Linear(29, 11),
    )


def assert_same_params(a: nn.Module, b: nn.Module, tol: float = 1e-5) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert rel_err(pa.float(), pb.float()) <= tol, name


def train(model: nn.Module, opt, sched, batches: list[torch.Tensor]) -> None:
    for x in batches:
        model(x).float().square().mean().backward()
        opt.step()
        opt.zero_grad()
        if sched is not None:
            sched.step()


def batches(name: str, n: int, rows: int = 13, dtype: torch.dtype = torch.float32) -> list:
    g = torch.Generator().manual_seed(seed_for(name))
    return [torch.randn(rows, 37, generator=g).to(dtype) for _ in range(n)]


@pytest.fixture(autouse=True)
def _exact_fp32():
    with reference.tf32_off():
        yield


@pytest.mark.parametrize(("cls", "kw"), OPTIMIZERS)
def test_capturable_steps_like_host_scalars_with_a_scheduler(cls, kw) -> None:
    """capturable=True (device step and scalars, read by the kernel) == capturable=False, with
    a LambdaLR changing the float lr every step; the step count lives on the device."""
    need_interpreter()
    name = f"cap-eager-{cls.__name__}-{kw.get('nesterov', False)}"
    host, dev = mlp(seed_for(name)), None
    dev = copy.deepcopy(host)
    opt_h, opt_d = cls(host, **kw), cls(dev, capturable=True, **kw)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + s)) for o in (opt_h, opt_d)]
    xs = batches(name, 4)
    train(host, opt_h, scheds[0], xs)
    train(dev, opt_d, scheds[1], xs)
    assert_same_params(host, dev)
    fused = dev[0].weight
    step = opt_d.state[fused]["step"]
    assert torch.is_tensor(step) and step.item() == 4
    assert step is opt_d.state[dev[3].weight]["step"]  # one count per group
    assert not torch.equal(fused, mlp(seed_for(name))[0].weight)  # it trained


def test_capturable_tensor_lr_follows_a_scheduler_like_torch() -> None:
    """A tensor lr, filled in place by the scheduler: the device scalars read it every step
    (torch AdamW, float lr, the same schedule, is the oracle)."""
    need_interpreter()
    name = "cap-tensor-lr"
    model = mlp(seed_for(name))
    twin = copy.deepcopy(model)
    lr = torch.tensor(1e-2)
    opt = ForgeAdamW(model, lr=lr, betas=(0.9, 0.99), weight_decay=0.1, capturable=True)
    ref = torch.optim.AdamW(
        twin.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, foreach=False
    )
    lam = lambda s: 0.5**s  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    sched_ref = torch.optim.lr_scheduler.LambdaLR(ref, lam)
    xs = batches(name, 3)
    train(model, opt, sched, xs)
    train(twin, ref, sched_ref, xs)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(1e-2 / 8)
    assert_same_params(model, twin)


@pytest.mark.parametrize("cls", [ForgeLion, ForgeSGD], ids=["lion", "sgd"])
def test_capturable_bf16_stochastic_rounding_draws_the_same_bits(cls) -> None:
    """bf16 weights rounded stochastically: the device-mixed key (kernel and PyTorch path)
    equals the host key, so the two modes agree bit for bit (Lion and SGD move by exact
    multiples of their scalars, so no fp32 difference can hide a key difference)."""
    need_interpreter()
    name = f"cap-bf16-{cls.__name__}"
    host = mlp(seed_for(name)).to(torch.bfloat16)
    dev = copy.deepcopy(host)
    opt_h, opt_d = cls(host, lr=1e-2, seed=5), cls(dev, lr=1e-2, seed=5, capturable=True)
    xs = batches(name, 3, dtype=torch.bfloat16)
    train(host, opt_h, None, xs)
    train(dev, opt_d, None, xs)
    for (n, a), (_, b) in zip(host.named_parameters(), dev.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_device_seed_key_equals_host_key() -> None:
    g = torch.Generator().manual_seed(seed_for("seed-key"))
    for seed, index, step in torch.randint(0, 2**31 - 1, (20, 3), generator=g).tolist():
        pkey = reference.sr_param_key(seed, index)
        want = reference.sr_seed_key(seed, index, step)
        step_t = torch.tensor(float(step), dtype=torch.float64)  # as DeviceScalars keeps it
        got = reference.device_seed_key(reference.as_int32(pkey), step_t)
        assert got.item() == want


def test_capturable_state_dict_round_trip() -> None:
    """Saved after two capturable steps, loaded into a fresh capturable optimizer (and into a
    host-scalar one): the next step agrees; the group's device step count is restored."""
    need_interpreter()
    name = "cap-state-dict"
    kw = {"lr": 1e-2, "betas": (0.9, 0.99), "weight_decay": 0.1}
    model = mlp(seed_for(name))
    opt = ForgeAdamW(model, capturable=True, **kw)
    xs = batches(name, 3)
    train(model, opt, None, xs[:2])
    clones = [copy.deepcopy(model), copy.deepcopy(model)]
    opts = [ForgeAdamW(clones[0], capturable=True, **kw), ForgeAdamW(clones[1], **kw)]
    for o in opts:
        o.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opts[0].state[clones[0][0].weight]["step"].item() == 2
    assert int(opts[1].state[clones[1][0].weight]["step"]) == 2
    train(model, opt, None, xs[2:])
    for m, o in zip(clones, opts, strict=True):
        train(m, o, None, xs[2:])
    for a, b in zip(model.parameters(), clones[0].parameters(), strict=True):
        assert torch.equal(a, b)
    assert_same_params(model, clones[1])
    # and back: a host-scalar state dict into a capturable optimizer
    back = copy.deepcopy(clones[1])
    opt_back = ForgeAdamW(back, capturable=True, **kw)
    opt_back.load_state_dict(copy.deepcopy(opts[1].state_dict()))
    assert opt_back.state[back[0].weight]["step"].item() == 3


def test_captured_step_refuses_a_changed_float_hyperparameter() -> None:
    """A float lr is baked into a graph: a replay after a scheduler reassigned it raises; a
    tensor lr filled in place is fine (the check runs before every replay)."""
    model = mlp(seed_for("cap-guard"))
    lr = torch.tensor(1e-2)
    opt = ForgeAdamW(model, lr=lr, weight_decay=0.1, backend="reference", capturable=True)
    step = CapturedStep(None, (), torch.zeros(()), opt, 0)  # the check needs no graph
    lr.fill_(5e-3)
    step.check_hyperparameters()
    opt.param_groups[0]["weight_decay"] = 0.2
    with pytest.raises(RuntimeError, match=r"\['weight_decay'\] changed after capture"):
        step.check_hyperparameters()
    opt.param_groups[0]["weight_decay"] = 0.1
    opt.param_groups[0]["lr"] = 5e-3  # a float replacing the tensor the graph reads
    with pytest.raises(RuntimeError, match="lr"):
        step.check_hyperparameters()


def test_a_one_graph_step_cannot_be_replayed_in_halves() -> None:
    """replay_forward / replay_backward_step need a split capture: on one graph they raise
    before replaying anything (the forward alone would leave the step half done)."""
    model = mlp(seed_for("cap-halves"))
    opt = ForgeAdamW(model, lr=1e-2, backend="reference", capturable=True)
    step = CapturedStep(None, (), torch.zeros(()), opt, 0)
    with pytest.raises(RuntimeError, match="split=True"):
        step.replay_forward()
    with pytest.raises(RuntimeError, match="split=True"):
        step.replay_backward_step()


def test_the_backward_half_refuses_a_changed_hyperparameter() -> None:
    """replay_backward_step replays the optimizer step, which bakes in the hyper-parameters:
    it checks them before replaying, as replay and replay_forward do."""

    class CountingGraph:  # stands in for the backward graph on the CPU: counts its replays
        replays = 0

        def replay(self) -> None:
            self.replays += 1

    model = mlp(seed_for("cap-half-guard"))
    opt = ForgeAdamW(model, lr=1e-2, weight_decay=0.1, backend="reference", capturable=True)
    backward = CountingGraph()
    step = CapturedStep(None, (), torch.zeros(()), opt, 0, backward_graph=backward)
    step.replay_backward_step()
    assert backward.replays == 1
    opt.param_groups[0]["weight_decay"] = 0.2
    with pytest.raises(RuntimeError, match=r"\['weight_decay'\] changed after capture"):
        step.replay_backward_step()
    assert backward.replays == 1  # refused before replaying


def test_capture_refuses_what_it_cannot_replay() -> None:
    model = mlp(seed_for("cap-refuse"))
    with pytest.raises(ValueError, match="capturable=True"):
        capture(model, ForgeAdamW(model, backend="reference"), lambda m, x: m(x).sum(), (None,))
    with pytest.raises(TypeError, match="FORGE optimizer"):
        capture(model, torch.optim.SGD(model.parameters()), lambda m, x: m(x).sum(), ())
    if not torch.cuda.is_available():
        opt = ForgeAdamW(mlp(1), capturable=True, backend="reference")
        with pytest.raises(RuntimeError, match="CUDA"):
            capture(model, opt, lambda m, x: m(x).sum(), (torch.randn(2, 37),))
    plain = torch.optim.AdamW(mlp(2).parameters())
    with pytest.raises((ValueError, RuntimeError), match=r"capturable=True|CUDA"):
        capture_step(model, plain, lambda m, x: m(x).sum(), (torch.randn(2, 37),))


# --- GPU: replays against eager steps ---------------------------------------------------------


def _loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((m(x) - y) ** 2).mean()


def _gpu_data(name: str, n: int, rows: int = 96, width: int = 256):
    g = torch.Generator().manual_seed(seed_for(name))
    return [
        (torch.randn(rows, width, generator=g).cuda(), torch.randn(rows, 11, generator=g).cuda())
        for _ in range(n)
    ]


def _replay_vs_eager(
    make_opt, make_twin_opt, name: str, n: int = 5, tol: float = 1e-5, split: bool = False
) -> None:
    """Warm-up steps on the example batch, then n replays (scheduler stepped after each)
    against the same steps taken eagerly by a host-scalar twin. `split`: the forward and the
    backward + step are two graphs, replayed one after the other."""
    model = mlp(seed_for(name), width=256, hidden=512).cuda()
    twin = copy.deepcopy(model)
    opt, sched = make_opt(model)
    ref, sched_ref = make_twin_opt(twin)
    data = _gpu_data(name, n + 1)
    step = capture_step(model, opt, _loss, data[0], warmup=3, split=split)
    assert (step.backward_graph is not None) == split
    for _ in range(step.warmup_steps):
        _loss(twin, *data[0]).backward()
        ref.step()
        ref.zero_grad()
    losses = []
    for x, y in data[1:]:
        if split:
            for buf, new in zip(step.inputs, (x, y), strict=True):
                buf.copy_(new)
            losses.append(step.replay_forward().item())
            step.replay_backward_step()
        else:
            losses.append(step(x, y).item())
        sched.step()
    for x, y in data[1:]:
        loss = _loss(twin, x, y)
        loss.backward()
        ref.step()
        ref.zero_grad()
        sched_ref.step()
        assert abs(losses.pop(0) - loss.item()) <= tol * abs(loss.item())
    assert_same_params(model, twin, tol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("split", [False, True], ids=["one-graph", "split"])
def test_forge_replays_equal_eager_steps(split: bool) -> None:
    need_cuda()
    lam = lambda s: 0.7**s  # noqa: E731
    kw = {"betas": (0.9, 0.999), "weight_decay": 0.1}

    def captured(m):
        opt = ForgeAdamW(m, lr=torch.tensor(1e-3, device="cuda"), capturable=True, **kw)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)

    def eager(m):
        opt = ForgeAdamW(m, lr=1e-3, **kw)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)

    _replay_vs_eager(captured, eager, "replay-forge", split=split)


@pytest.mark.gpu
@pytest.mark.parametrize("split", [False, True], ids=["one-graph", "split"])
def test_torch_fused_adamw_replays_equal_eager_steps(split: bool) -> None:
    """The baseline captured the same way: torch AdamW(fused=True, capturable=True)."""
    need_cuda()
    lam = lambda s: 0.7**s  # noqa: E731

    def captured(m):
        lr = torch.tensor(1e-3, device="cuda")
        opt = torch.optim.AdamW(m.parameters(), lr=lr, fused=True, capturable=True)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)

    def eager(m):
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)

    _replay_vs_eager(captured, eager, "replay-torch", split=split)


@pytest.mark.gpu
def test_forge_capture_bf16_autocast_replays_equal_eager_steps() -> None:
    """bf16 autocast (the claim's precision): the kernel writes the old W for dX inside the
    graph; replays equal eager capturable steps bit for bit (same kernels, same order)."""
    need_cuda()
    model = mlp(seed_for("replay-autocast"), width=256, hidden=512).cuda()
    twin = copy.deepcopy(model)
    opt = ForgeAdamW(model, lr=1e-3, capturable=True)
    ref = ForgeAdamW(twin, lr=1e-3, capturable=True)

    def loss_fn(m, x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return _loss(m, x, y).float()

    data = _gpu_data("replay-autocast", 4)
    step = capture(model, opt, loss_fn, data[0], warmup=2)
    for _ in range(2):
        loss_fn(twin, *data[0]).backward()
        ref.step()
        ref.zero_grad()
    for x, y in data[1:]:
        step(x, y)
        loss_fn(twin, x, y).backward()
        ref.step()
        ref.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_replay_refuses_a_reassigned_float_lr() -> None:
    need_cuda()
    model = mlp(seed_for("replay-guard"), width=256).cuda()
    opt = ForgeAdamW(model, lr=1e-3, capturable=True)
    data = _gpu_data("replay-guard", 2)
    step = capture(model, opt, _loss, data[0], warmup=1)
    step(*data[1])
    opt.param_groups[0]["lr"] = 5e-4
    with pytest.raises(RuntimeError, match="changed after capture"):
        step(*data[1])
