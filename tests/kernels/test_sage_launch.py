"""The optimizers' bound launches (`kernels.sage.launch.SageStepPlan`): bit-identical to the
general `sage_step_` / `lion_step_` path, re-bound when a parameter or its state moves, no
allocation and no host sync per step (GPU), and the direct launch's argument packing checked on
the CPU by running the interpreted kernels from exactly the arguments a compiled launcher gets.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from kernels.sage import SAGE, Lion
from kernels.sage.reference import as_matrix

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1)

SHAPES = [
    pytest.param((37, 50), id="37x50"),
    pytest.param((123,), id="vector123"),
    pytest.param((3, 5, 7), id="3x5x7"),
    pytest.param((4096, 4096), id="4096x4096", marks=GPU),
]


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def _grads(shape: tuple[int, ...], n: int, gen: torch.Generator, dtype: torch.dtype) -> list:
    """Gradients with columns of different scales (so H < 1 somewhere)."""
    out = []
    for _ in range(n):
        g = torch.randn(shape, generator=gen) * torch.empty(shape[-1]).uniform_(-2, 2).exp()
        out.append(g.to(device=DEVICE, dtype=dtype))
    return out


def _sage_twins(shape: tuple[int, ...], order: str, dtype: torch.dtype, seed: int) -> tuple:
    """A parameter stepped by the SAGE optimizer, and a copy with its own state for the
    general path."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(shape, generator=gen).to(device=DEVICE, dtype=dtype).requires_grad_()
    twin = p.detach().clone()
    m = torch.zeros_like(twin)
    s_ema = torch.zeros(as_matrix(twin).shape[1], device=DEVICE)
    opt = SAGE(
        [p],
        lr=HYPER["lr"],
        betas=(HYPER["beta1"], HYPER["beta2"]),
        eps=HYPER["eps"],
        weight_decay=HYPER["weight_decay"],
        order=order,
    )
    return p, opt, twin, m, s_ema, gen


def _assert_same_sage(p: torch.Tensor, opt: SAGE, twin: torch.Tensor, m, s_ema) -> None:
    st = opt.state[p]
    assert torch.equal(p.detach(), twin)
    assert torch.equal(st["exp_avg"], m)
    assert torch.equal(st["s_ema"], s_ema)


@pytest.mark.parametrize("order", ["paper", "code"])
@pytest.mark.parametrize("shape", SHAPES)
def test_sage_optimizer_is_the_general_path_bit_for_bit(shape: tuple[int, ...], order: str) -> None:
    """Same kernels, configs and scalars: identical bits, also after the parameter moves
    (`.data =`) and after the state is reloaded (new tensors): the plan re-binds to them."""
    from kernels.sage.launch import sage_step_

    p, opt, twin, m, s_ema, gen = _sage_twins(shape, order, torch.float32, _seed(shape, order))
    grads = _grads(shape, 9, gen, torch.float32)
    for t, g in enumerate(grads, start=1):
        if t == 4:
            p.data = p.data.clone()  # the parameter moves
        if t == 7:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # so does its state
        p.grad = g.clone()  # a new gradient tensor each step, as after zero_grad(None)
        opt.step()
        sage_step_(twin, g, m, s_ema, t, order=order, **HYPER)
        _assert_same_sage(p, opt, twin, m, s_ema)
    assert float(s_ema.abs().min()) > 0.0


def test_sage_optimizer_bf16_is_the_general_path_bit_for_bit() -> None:
    from kernels.sage.launch import sage_step_

    shape = (45, 130)
    p, opt, twin, m, s_ema, gen = _sage_twins(shape, "paper", torch.bfloat16, _seed("bf16"))
    for t, g in enumerate(_grads(shape, 4, gen, torch.bfloat16), start=1):
        p.grad = g
        opt.step()
        sage_step_(twin, g, m, s_ema, t, **HYPER)
        _assert_same_sage(p, opt, twin, m, s_ema)


@pytest.mark.parametrize(
    "shape",
    [pytest.param((29, 140), id="29x140"), pytest.param((4096, 4096), id="4096", marks=GPU)],
)
def test_lion_optimizer_is_the_general_path_bit_for_bit(shape: tuple[int, ...]) -> None:
    from kernels.sage.launch import lion_step_

    gen = torch.Generator().manual_seed(_seed("lion", shape))
    p = torch.randn(shape, generator=gen).to(DEVICE).requires_grad_()
    twin, m = p.detach().clone(), torch.zeros(shape, device=DEVICE)
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.1)
    opt = Lion([p], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    for t, g in enumerate(_grads(shape, 5, gen, torch.float32), start=1):
        if t == 3:
            p.data = p.data.clone()
        p.grad = g
        opt.step()
        lion_step_(twin, g, m, **hyper)
        assert torch.equal(p.detach(), twin)
        assert torch.equal(opt.state[p]["exp_avg"], m)


def test_plan_keeps_its_scratch_between_steps() -> None:
    """The column partials and H are the plan's: the same buffers every step."""
    gen = torch.Generator().manual_seed(_seed("scratch"))
    p = torch.randn(40, 24, generator=gen).to(DEVICE).requires_grad_()
    opt = SAGE([p], lr=1e-3)
    ptrs = set()
    for _ in range(3):
        p.grad = torch.randn(40, 24, generator=gen).to(DEVICE)
        opt.step()
        plan = opt._sage_plans[id(p)]
        ptrs.add((plan.partial.data_ptr(), plan.scale.data_ptr()))
    assert len(ptrs) == 1
    assert float(plan.scale.max()) <= 1.0 and torch.isfinite(plan.scale).all()


class _InterpretedLauncher:
    """Stands in for a compiled kernel on the CPU: its `run` takes exactly what the direct
    launch hands a compiled launcher (grid, stream, metadata, hooks, then every kernel argument
    by position, pointers as integers) and runs the interpreted kernel from those arguments."""

    packed_metadata = None
    function = 0

    def __init__(self, kernel: Any, pointers: dict[int, torch.Tensor]) -> None:
        self.kernel = kernel
        self.pointers = pointers
        self.calls = 0

    def run(self, g0: int, g1: int, g2: int, stream: int, *rest: Any) -> None:
        _function, _meta, _launch_meta, _enter_hook, _exit_hook, *args = rest
        names = list(self.kernel.arg_names)
        assert len(args) == len(names), (names, args)
        kwargs = {}
        for name, value in zip(names, args, strict=True):
            if name.endswith("_ptr"):
                assert isinstance(value, int), f"{name} is passed as {type(value)}"
                value = self.pointers[value]  # KeyError: not a pointer of this step
            kwargs[name] = value
        autotuned = hasattr(self.kernel, "configs")
        jit = self.kernel.fn if autotuned else self.kernel  # an autotuner wraps the JIT function
        jit[(g0, g1, g2)](**kwargs)
        self.calls += 1


class _CompilingKernel:
    """Wraps a kernel: `kernel[grid](...)` launches it (interpreted) and returns an
    `_InterpretedLauncher`, as a GPU launch returns the compiled kernel."""

    def __init__(self, kernel: Any, pointers: dict[int, torch.Tensor]) -> None:
        self.kernel = kernel
        self.launcher = _InterpretedLauncher(kernel, pointers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)

    def __getitem__(self, grid: Any) -> Any:
        def launch(*args: Any, **kwargs: Any) -> _InterpretedLauncher:
            self.kernel[grid](*args, **kwargs)
            return self.launcher

        return launch


@pytest.fixture
def direct_launch_on_cpu(monkeypatch) -> Iterator[dict[int, torch.Tensor]]:
    """The direct-launch path with interpreted kernels behind it; yields the pointer table the
    test fills with every tensor a step may touch."""
    if CUDA:
        pytest.skip("the GPU runs the real direct launch (the tests above)")
    from kernels.runtime import launch as runtime_launch
    from kernels.sage import kernels as sk
    from kernels.sage import launch

    pointers: dict[int, torch.Tensor] = {}
    for name in ("_sage_col_abs_sum_kernel", "_sage_scale_kernel", "_sage_apply_kernel"):
        monkeypatch.setattr(sk, name, _CompilingKernel(getattr(sk, name), pointers))
    monkeypatch.setitem(launch.FAST_LAUNCH, "on", True)
    monkeypatch.setattr(runtime_launch, "raw_stream", lambda index: 0)
    yield pointers


@pytest.mark.parametrize("order", ["paper", "code"])
def test_direct_launch_arguments_reproduce_the_general_path(direct_launch_on_cpu, order) -> None:
    from kernels.sage import kernels as sk
    from kernels.sage import launch
    from kernels.sage.launch import sage_step_

    pointers = direct_launch_on_cpu
    shape = (37, 50)
    p, opt, twin, m, s_ema, gen = _sage_twins(shape, order, torch.float32, _seed("direct", order))
    for t, g in enumerate(_grads(shape, 5, gen, torch.float32), start=1):
        if t == 4:
            p.data = p.data.clone()
        p.grad = g.clone()
        st = opt.state[p]
        plan = opt.__dict__.get("_sage_plans", {}).get(id(p))
        tensors = [p, p.grad, *st.values()] if st else [p, p.grad]
        if plan is not None:
            tensors += [plan.partial, plan.scale]
        pointers.clear()
        pointers.update({t_.data_ptr(): t_.detach() for t_ in tensors if torch.is_tensor(t_)})
        opt.step()
        sage_step_(twin, g, m, s_ema, t, order=order, **HYPER)
        _assert_same_sage(p, opt, twin, m, s_ema)
    # steps 2, 3 and 5 went through the direct launch (1 and 4 bound the plan)
    assert launch.FAST_LAUNCH["on"], "a direct launch was refused"
    assert sk._sage_apply_kernel.launcher.calls == 3
    assert sk._sage_col_abs_sum_kernel.launcher.calls == 3
    assert sk._sage_scale_kernel.launcher.calls == 3


def test_direct_launch_lion_reproduces_the_general_path(direct_launch_on_cpu) -> None:
    from kernels.sage import kernels as sk
    from kernels.sage import launch
    from kernels.sage.launch import lion_step_

    pointers = direct_launch_on_cpu
    gen = torch.Generator().manual_seed(_seed("direct-lion"))
    p = torch.randn(29, 140, generator=gen).requires_grad_()
    twin, m = p.detach().clone(), torch.zeros(29, 140)
    opt = Lion([p], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    for g in _grads((29, 140), 3, gen, torch.float32):
        p.grad = g
        st = opt.state[p]
        pointers.clear()
        pointers.update(
            {t.data_ptr(): t.detach() for t in (p, g, *st.values()) if torch.is_tensor(t)}
        )
        opt.step()
        lion_step_(twin, g, m, lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.1)
        assert torch.equal(p.detach(), twin)
        assert torch.equal(opt.state[p]["exp_avg"], m)
    assert launch.FAST_LAUNCH["on"], "a direct launch was refused"
    assert sk._sage_apply_kernel.launcher.calls == 2


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_optimizer_step_allocates_nothing_and_never_syncs() -> None:
    """After the first step, a SAGE step asks the caching allocator for nothing and makes no
    synchronising CUDA call."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    params = [
        torch.randn(s, device="cuda", generator=gen).requires_grad_()
        for s in ((4096, 4096), (32000, 512), (512,))
    ]
    for q in params:
        q.grad = torch.randn(q.shape, device="cuda", generator=gen)
    opt = SAGE(params, lr=1e-4, weight_decay=0.01)
    opt.step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["allocation.all.allocated"]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert torch.cuda.memory_stats()["allocation.all.allocated"] == before
    for q in params:
        assert torch.isfinite(q).all()


def test_host_bench_runs_with_the_launch_stubbed() -> None:
    """The host-path bench times real optimizer code around a stubbed launch, then puts the
    kernels back."""
    from bench.kernels import sage as bench
    from kernels.sage import kernels as sk

    kernel = sk._sage_apply_kernel
    res = bench.host_path_cpu(shape=(8, 16), n_params=3, rounds=1, iters=3)
    assert sk._sage_apply_kernel is kernel
    assert {
        "sage_step_1_param_us",
        "sage_step_general_us",
        "adamw_fused_cpu_step_1_param_us",
    } <= set(res)
    assert all(v > 0 for k, v in res.items() if k != "sage_per_param_us")
