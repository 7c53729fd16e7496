"""FORGE's fused weight-gradient + update kernel against the plain-PyTorch reference.

The interpreter (CI) runs odd small shapes; the GPU cases (`-m gpu`) run the same functions at
real sizes and in bf16.
"""

from __future__ import annotations

import pytest
import torch

from kernels.forge import Rule, StepScalars, forge_linear_step_, reference, round_to_bf16_triton
from kernels.forge.kernels import INTERPRET, autotune_configs, make_config
from kernels.runtime.launch import FAST_LAUNCH
from kernels.runtime.testing import (
    bf16_ulps_apart,
    guarded,
    interpreter_quirks,
    rel_err,
    seed_for,
)

DEVICES = [
    pytest.param("cpu", id="interpreter"),
    pytest.param("cuda", id="gpu", marks=pytest.mark.gpu),
]
# (T tokens, N out features, K in features): none a multiple of the tile except the real size.
SHAPES = {
    "cpu": [(45, 37, 123), (7, 64, 33)],
    "cuda": [(999, 1537, 3001), (2048, 4096, 4096)],
}


def need(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if device == "cpu" and not INTERPRET:
        pytest.skip("CPU cases run the kernel through Triton's interpreter (TRITON_INTERPRET=1)")


def assert_update_close(got: torch.Tensor, want: torch.Tensor, max_step: float) -> None:
    """Kernel vs reference after a few updates: the GEMMs sum in different orders.

    Norm-wise within 1e-5 relative, and element-wise within 1e-5 except at a handful of
    elements (one in 10^4 at most): where a gradient is within rounding of zero, a sign-based
    rule (Adam's first steps, Lion) may go the other way (a difference of up to 2·lr a step),
    and tensor-core accumulation (bf16 inputs) is not exactly fp32. Those stay under `max_step`.
    """
    assert rel_err(got, want) <= 1e-5
    diff = (got - want).abs()
    off = diff > 1e-5 + 1e-5 * want.abs()
    assert off.sum().item() <= 3 + 1e-4 * want.numel(), off.sum().item()
    assert diff.max().item() <= max_step


def scalars(rule: Rule, step: int, *, nesterov: bool = False) -> StepScalars:
    if rule is Rule.ADAMW:
        return StepScalars.adamw(step=step, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    if rule is Rule.LION:
        return StepScalars.lion(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    return StepScalars.sgd_momentum(
        step=step,
        lr=1e-2,
        momentum=0.9,
        dampening=0.0 if nesterov else 0.1,
        weight_decay=0.05,
        nesterov=nesterov,
    )


RULES = [
    pytest.param(Rule.ADAMW, False, id="adamw"),
    pytest.param(Rule.LION, False, id="lion"),
    pytest.param(Rule.SGD_MOMENTUM, False, id="sgd"),
    pytest.param(Rule.SGD_MOMENTUM, True, id="sgd-nesterov"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16in"])
@pytest.mark.parametrize(("rule", "nesterov"), RULES)
def test_fused_step_matches_reference(
    device: str, in_dtype: torch.dtype, rule: Rule, nesterov: bool
) -> None:
    """fp32 W and states after 3 fused steps equal the reference's within 1e-5 relative."""
    need(device)
    g = torch.Generator().manual_seed(seed_for(f"fused-{device}-{in_dtype}-{rule}-{nesterov}"))
    for T, N, K in SHAPES[device]:
        w0 = torch.randn(N, K, generator=g)
        w_k, check_w = guarded(w0.to(device))
        states_k, checks = [], [check_w]
        for _ in range(rule.n_states):
            s, c = guarded(torch.zeros(N, K, device=device))
            states_k.append(s)
            checks.append(c)
        w_r = w0.clone().to(device)
        states_r = [torch.zeros(N, K, device=device) for _ in range(rule.n_states)]
        for step in (1, 2, 3):
            dy = torch.randn(T, N, generator=g).to(device, in_dtype)
            x = torch.randn(T, K, generator=g).to(device, in_dtype)
            sc = scalars(rule, step, nesterov=nesterov)
            forge_linear_step_(dy, x, w_k, states_k, rule, sc, precision="ieee", tune=False)
            reference.forge_linear_step_reference(dy, x, w_r, states_r, rule, sc)
        for c in checks:
            c()
        assert torch.isfinite(w_k).all()
        assert_update_close(w_k, w_r, max_step=2 * 3 * max(sc.lr, sc.step_size))
        for s_k, s_r in zip(states_k, states_r, strict=True):
            assert rel_err(s_k, s_r) <= 1e-5
        # The update moved every weight: no tile was skipped.
        assert (w_k != w0.to(device)).float().mean().item() > 0.99


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
def test_bf16_weights_match_reference(device: str, stochastic: bool) -> None:
    """bf16 W (fp32 update, rounded in the epilogue) equals the reference's rounding.

    The fp32 values before rounding differ by GEMM summation order (~1e-7 relative), which can
    move a value across a rounding boundary: 1 ulp on a few elements; and at a gradient within
    rounding of zero Adam's step may go the other way (2·lr), on one element in 10^5 at most.
    """
    need(device)
    g = torch.Generator().manual_seed(seed_for(f"bf16w-{device}-{stochastic}"))
    for T, N, K in SHAPES[device]:
        w0 = torch.randn(N, K, generator=g).to(device, torch.bfloat16)
        w_k, check = guarded(w0)
        w_r = w0.clone()
        st_k = [torch.zeros(N, K, device=device) for _ in range(2)]
        st_r = [torch.zeros(N, K, device=device) for _ in range(2)]
        for step in (1, 2):
            dy = torch.randn(T, N, generator=g).to(device, torch.bfloat16)
            x = torch.randn(T, K, generator=g).to(device, torch.bfloat16)
            sc = scalars(Rule.ADAMW, step)
            key = reference.sr_seed_key(7, 3, step)
            forge_linear_step_(
                dy, x, w_k, st_k, Rule.ADAMW, sc, stochastic=stochastic, seed_key=key, tune=False
            )
            reference.forge_linear_step_reference(
                dy, x, w_r, st_r, Rule.ADAMW, sc, stochastic=stochastic, seed_key=key
            )
        check()
        ulps = bf16_ulps_apart(w_k, w_r)
        assert (ulps > 0).float().mean().item() < 1e-3
        assert (ulps > 1).sum().item() <= 3 + 1e-5 * ulps.numel()
        diff = (w_k.float() - w_r.float()).abs()
        assert diff.max().item() <= 2 * 2 * 3e-3 + 2**-7 * w_r.float().abs().max().item()
        assert (w_k != w0).float().mean().item() > 0.5
        for s_k, s_r in zip(st_k, st_r, strict=True):
            assert rel_err(s_k, s_r) <= 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_old_weight_copy_is_the_pre_update_weight_in_bf16(device: str) -> None:
    """With w_old_out the kernel also writes W as it was, rounded to nearest bf16 (for dX)."""
    need(device)
    g = torch.Generator().manual_seed(seed_for(f"wold-{device}"))
    T, N, K = SHAPES[device][0]
    w0 = torch.randn(N, K, generator=g).to(device)
    w = w0.clone()
    st = [torch.zeros(N, K, device=device) for _ in range(2)]
    old, check = guarded(torch.full((N, K), float("nan"), device=device).bfloat16())
    dy = torch.randn(T, N, generator=g).to(device, torch.bfloat16)
    x = torch.randn(T, K, generator=g).to(device, torch.bfloat16)
    forge_linear_step_(dy, x, w, st, Rule.ADAMW, scalars(Rule.ADAMW, 1), w_old_out=old, tune=False)
    check()
    assert torch.equal(old.view(torch.int16), w0.bfloat16().view(torch.int16))
    assert (w != w0).float().mean().item() > 0.99


# (N, K, token counts of the two phases): the second count falls in another tuning bucket.
# N·K stays under AUTOTUNE_MIN_ELEMENTS on the GPU: tuning (8 compiles a variant) is the claim's.
LAUNCHER_SHAPES = {"cpu": (37, 45, 23, 70), "cuda": (1537, 2001, 999, 2048)}


@pytest.mark.parametrize("device", DEVICES)
def test_layer_launcher_follows_what_changes(device: str) -> None:
    """A layer's bound launcher (the backward's hot path) equals the reference over six steps
    while what it binds changes under it. Each change re-binds; each repeat of the previous
    call's signature takes the direct launch on a GPU (integer pointers): a stale pointer or
    specialisation would update the wrong memory or compute the wrong step."""
    need(device)
    from kernels.forge import launch

    g = torch.Generator().manual_seed(seed_for(f"layer-launcher-{device}"))
    N, K, t0, t1 = LAUNCHER_SHAPES[device]
    calls = [  # (tokens, old-W output, strided x, move W's storage first)
        (t0, False, False, False),
        (t0, False, False, False),  # repeat: direct
        (t0, True, False, False),  # + old W: re-bind
        (t0, True, False, False),  # repeat: direct, old W written through its pointer
        (t1, True, True, False),  # other bucket, strided x: re-bind
        (t1, True, True, True),  # W's storage moved by `.data =`: re-bind
    ]
    w0 = torch.randn(N, K, generator=g)
    w_k = w0.to(device)
    st_k = [torch.zeros(N, K, device=device) for _ in range(2)]
    w_r = w0.to(device)
    st_r = [torch.zeros(N, K, device=device) for _ in range(2)]
    layer = launch.LayerLauncher(w_k, st_k, Rule.ADAMW, stochastic=True)
    moved_from = moved_copy = None
    for step, (T, with_old, strided, move) in enumerate(calls, start=1):
        dy = torch.randn(T, N, generator=g).to(device, torch.bfloat16)
        if strided:
            x = torch.randn(K, T, generator=g).to(device, torch.bfloat16).t()
        else:
            x = torch.randn(T, K, generator=g).to(device, torch.bfloat16)
        if move:
            moved_from = w_k.data
            moved_copy = moved_from.clone()
            w_k.data = w_k.data.clone()
        old = check_old = None
        if with_old:
            old, check_old = guarded(torch.full((N, K), float("nan"), device=device).bfloat16())
        before = w_k.clone()
        sc = scalars(Rule.ADAMW, step)
        layer(dy, x, sc, sc.kernel_args(), 0, "ieee", old)
        reference.forge_linear_step_reference(dy, x, w_r, st_r, Rule.ADAMW, sc)
        if check_old is not None:
            check_old()
            assert torch.equal(old.view(torch.int16), before.bfloat16().view(torch.int16))
        if device == "cuda":
            assert layer._direct is not None and FAST_LAUNCH["on"], "no direct launch"
        assert_update_close(w_k, w_r, max_step=2 * step * sc.step_size)
        for s_k, s_r in zip(st_k, st_r, strict=True):
            assert rel_err(s_k, s_r) <= 1e-5
    assert torch.equal(moved_from, moved_copy), "the launcher wrote the weight's old storage"


@pytest.mark.gpu
def test_layer_launcher_direct_equals_jit_launch() -> None:
    """The bound launcher's direct call (integer pointers, bound constexprs) computes what the
    general path computes with the same config: bit for bit, over three steps."""
    need("cuda")
    from kernels.forge import launch

    g = torch.Generator().manual_seed(seed_for("layer-direct"))
    T, N, K = 320, 1024, 768  # below the tuning threshold: both sides take default_config()
    w0 = torch.randn(N, K, generator=g).cuda()
    runs = {}
    for how in ("general", "bound"):
        w = w0.clone()
        st = [torch.zeros(N, K, device="cuda") for _ in range(2)]
        layer = launch.LayerLauncher(w, st, Rule.ADAMW, stochastic=True)
        gen = torch.Generator().manual_seed(1)
        olds = []
        for step in (1, 2, 3):
            dy = torch.randn(T, N, generator=gen).to("cuda", torch.bfloat16)
            x = torch.randn(T, K, generator=gen).to("cuda", torch.bfloat16)
            old = torch.empty(N, K, dtype=torch.bfloat16, device="cuda")
            sc = scalars(Rule.ADAMW, step)
            if how == "general":
                forge_linear_step_(dy, x, w, st, Rule.ADAMW, sc, w_old_out=old, tune=False)
            else:
                layer(dy, x, sc, sc.kernel_args(), 0, "ieee", old)
            olds.append(old.view(torch.int16))
        runs[how] = (w, *st, *olds)
        if how == "bound":
            assert layer._direct is not None, "the bound launcher never went direct"
    for a, b in zip(runs["general"], runs["bound"], strict=True):
        assert torch.equal(a, b)


# Epilogue variants the GPU tuner may pick, at interpreter-sized tiles.
VARIANTS = [
    pytest.param(make_config(32, 64, 32, 4, 1, False, 2, 1), id="split2-rowmajor"),
    pytest.param(make_config(32, 128, 16, 4, 1, False, 4, 8), id="split4"),
    pytest.param(make_config(32, 32, 32, 4, 1, True, 1, 2), id="prefetch"),
]


@pytest.mark.skipif(not INTERPRET, reason="the GPU runs these through the tuned configs")
@pytest.mark.parametrize("config", VARIANTS)
def test_epilogue_variants_match_reference(config) -> None:
    """Column-split and prefetched epilogues, and both launch orders, compute the same step."""
    g = torch.Generator().manual_seed(seed_for(f"variant-{config}"))
    T, N, K = 45, 37, 201
    w0 = torch.randn(N, K, generator=g)
    w_k, check = guarded(w0)
    st_k = [torch.rand(N, K, generator=g) for _ in range(2)]
    w_r, st_r = w0.clone(), [s.clone() for s in st_k]
    old = torch.empty(N, K, dtype=torch.bfloat16)
    dy = torch.randn(T, N, generator=g).bfloat16()
    x = torch.randn(T, K, generator=g).bfloat16()
    sc = scalars(Rule.ADAMW, 4)
    forge_linear_step_(dy, x, w_k, st_k, Rule.ADAMW, sc, w_old_out=old, config=config)
    reference.forge_linear_step_reference(dy, x, w_r, st_r, Rule.ADAMW, sc)
    check()
    assert_update_close(w_k, w_r, max_step=2 * sc.step_size)
    assert rel_err(st_k[1], st_r[1]) <= 1e-5
    assert torch.equal(old.view(torch.int16), w0.bfloat16().view(torch.int16))


def _special_values(n: int, g: torch.Generator) -> torch.Tensor:
    """Random values over many binades plus the cases rounding gets wrong first."""
    x = torch.randn(n, generator=g) * torch.exp2(torch.randint(-30, 30, (n,), generator=g))
    ties = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, -(1.0 + 2**-8), 2**-130, -(2**-140)])
    special = torch.tensor(
        [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3.4028235e38, -3.4028235e38]
    )
    return torch.cat([x, ties, special])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stochastic", [False, True], ids=["nearest", "stochastic"])
def test_epilogue_rounding_is_bit_exact(device: str, stochastic: bool) -> None:
    """The kernel's integer bf16 rounding equals the reference's bit for bit."""
    need(device)
    g = torch.Generator().manual_seed(seed_for(f"round-{device}-{stochastic}"))
    n = 3001 if device == "cpu" else 1_000_003
    x = _special_values(n, g).to(device)
    key = reference.sr_seed_key(11, 5, 9)
    got = round_to_bf16_triton(x, stochastic=stochastic, seed_key=key)
    bits = reference.sr_random_bits(1, x.numel(), key, device).reshape(-1) if stochastic else None
    want = reference.round_to_bf16(x, bits)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))
    if not stochastic:
        # Round-to-nearest-even is what torch's own cast does (NaN payloads aside).
        ok = ~torch.isnan(x)
        torch_cast = x.to(torch.bfloat16)
        assert torch.equal(want[ok].view(torch.int16), torch_cast[ok].view(torch.int16))
        assert torch.isnan(want[~ok]).all()


def test_reference_stochastic_rounding_is_unbiased() -> None:
    """Mean of many stochastic roundings of one value is the value (CPU, reference)."""
    g = torch.Generator().manual_seed(seed_for("sr-mean"))
    x = 1.0 + torch.rand(64, generator=g) * 2**-7  # between two bf16 neighbours of 1
    draws = torch.stack(
        [
            reference.round_to_bf16(x, reference.sr_random_bits(1, 64, key).reshape(-1)).float()
            for key in range(400)
        ]
    )
    ulp = 2.0**-7
    assert (draws.mean(0) - x).abs().max().item() < 0.1 * ulp
    assert ((draws == 1.0) | (draws == 1.0 + ulp)).all()


@pytest.mark.parametrize("nesterov", [False, True])
def test_reference_rules_equal_torch_optimizers(nesterov: bool) -> None:
    """The oracle itself: reference AdamW/SGD equal torch's single-tensor optimizers exactly."""
    g = torch.Generator().manual_seed(seed_for(f"oracle-{nesterov}"))
    p0 = torch.randn(33, 17, generator=g)
    for rule in (Rule.ADAMW, Rule.SGD_MOMENTUM):
        p_t = torch.nn.Parameter(p0.clone())
        if rule is Rule.ADAMW:
            opt = torch.optim.AdamW(
                [p_t], lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1, foreach=False
            )
        else:
            damp = 0.0 if nesterov else 0.1
            opt = torch.optim.SGD(
                [p_t],
                lr=1e-2,
                momentum=0.9,
                dampening=damp,
                weight_decay=0.05,
                nesterov=nesterov,
                foreach=False,
            )
        p_r = p0.clone()
        states = [torch.zeros_like(p0) for _ in range(rule.n_states)]
        for step in (1, 2, 3):
            grad = torch.randn(33, 17, generator=g)
            p_t.grad = grad.clone()
            opt.step()
            reference.apply_rule_(rule, scalars(rule, step, nesterov=nesterov), p_r, grad, states)
        assert torch.equal(p_t.detach(), p_r)


def test_launcher_refuses_inconsistent_inputs() -> None:
    w = torch.zeros(4, 5)
    st = [torch.zeros(4, 5), torch.zeros(4, 5)]
    sc = scalars(Rule.ADAMW, 1)
    with pytest.raises(ValueError, match="do not chain"):
        forge_linear_step_(torch.zeros(3, 4), torch.zeros(2, 5), w, st, Rule.ADAMW, sc)
    with pytest.raises(TypeError, match="must both be fp32, bf16 or fp16"):
        forge_linear_step_(
            torch.zeros(3, 4), torch.zeros(3, 5, dtype=torch.bfloat16), w, st, Rule.ADAMW, sc
        )
    with pytest.raises(ValueError, match="keeps 2 state"):
        forge_linear_step_(torch.zeros(3, 4), torch.zeros(3, 5), w, st[:1], Rule.ADAMW, sc)
    with pytest.raises(TypeError, match="fp32 or bf16 weights"):
        forge_linear_step_(torch.zeros(3, 4), torch.zeros(3, 5), w.half(), st, Rule.ADAMW, sc)


@pytest.mark.skipif(not INTERPRET, reason="checks the CPU interpreter's known quirks")
def test_interpreter_canary() -> None:
    """The interpreter quirks this kernel works around are still there (and wraps still wrap).

    If bf16 tl.dot becomes right, the UPCAST switch can go; if uint32 products stop wrapping,
    the stochastic-rounding hash breaks. (The canary kernels are the runtime's, shared.)
    """
    quirks = interpreter_quirks("cpu")
    assert quirks["bf16_dot_wrong"], "bf16 tl.dot is right now"
    assert quirks["uint32_products_wrap"]


@pytest.mark.gpu
def test_every_tuned_config_is_correct() -> None:
    """Each tile shape the autotuner may pick computes the same step (real size, bf16 inputs)."""
    need("cuda")
    g = torch.Generator().manual_seed(seed_for("configs"))
    T, N, K = 784, 4096, 4096 - 64  # partial tiles; sizes the claim's binaries share
    dy = torch.randn(T, N, generator=g).to("cuda", torch.bfloat16)
    x = torch.randn(T, K, generator=g).to("cuda", torch.bfloat16)
    w0 = torch.randn(N, K, generator=g).cuda()
    m0 = torch.rand(N, K, generator=g).cuda() * 1e-2
    v0 = torch.rand(N, K, generator=g).cuda() * 1e-4
    sc = scalars(Rule.ADAMW, 5)
    w_r, st_r = w0.clone(), [m0.clone(), v0.clone()]
    reference.forge_linear_step_reference(dy, x, w_r, st_r, Rule.ADAMW, sc)
    for cfg in autotune_configs():
        w_k, st_k = w0.clone(), [m0.clone(), v0.clone()]
        old = torch.empty(N, K, dtype=torch.bfloat16, device="cuda")
        forge_linear_step_(dy, x, w_k, st_k, Rule.ADAMW, sc, config=cfg, w_old_out=old)
        assert torch.equal(old.view(torch.int16), w0.bfloat16().view(torch.int16)), cfg
        assert_update_close(w_k, w_r, max_step=2 * sc.step_size)
        assert rel_err(st_k[0], st_r[0]) <= 1e-5, cfg
        assert rel_err(st_k[1], st_r[1]) <= 1e-5, cfg


def _ulp_bf16(x: torch.Tensor) -> torch.Tensor:
    """The bf16 spacing at |x| (normal numbers): 2**(exponent - 7)."""
    _, e = torch.frexp(x.abs())
    return torch.exp2((e - 8).to(x.dtype))


@pytest.mark.gpu
def test_stochastic_rounding_is_unbiased_over_200_steps() -> None:
    """bf16 W with stochastic rounding tracks the fp32 trajectory: mean error < 0.1 ulp.

    Every step moves each weight by ~1/80 of a bf16 ulp in a known direction (gradients are
    positive). Round-to-nearest drops every such update and drifts by the whole path; stochastic
    rounding keeps the mean error, measured along the direction of motion, near zero.
    """
    need("cuda")
    g = torch.Generator(device="cuda").manual_seed(seed_for("sr-200"))
    T, N, K = 256, 2048, 2048
    w0 = 1.25 + 0.5 * torch.rand(N, K, generator=g, device="cuda")  # inside one binade
    w0 = w0.bfloat16().float()  # start on the bf16 grid
    lr = 1e-4
    runs = {"fp32": w0.clone(), "stochastic": w0.bfloat16(), "nearest": w0.bfloat16()}
    states = {k: [torch.zeros(N, K, device="cuda") for _ in range(2)] for k in runs}
    for step in range(1, 201):
        dy = torch.rand(T, N, generator=g, device="cuda").bfloat16()
        x = torch.rand(T, K, generator=g, device="cuda").bfloat16()
        sc = StepScalars.adamw(step=step, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        reference.forge_linear_step_reference(dy, x, runs["fp32"], states["fp32"], Rule.ADAMW, sc)
        for mode in ("stochastic", "nearest"):
            forge_linear_step_(
                dy,
                x,
                runs[mode],
                states[mode],
                Rule.ADAMW,
                sc,
                stochastic=mode == "stochastic",
                seed_key=reference.sr_seed_key(1, 0, step),
            )
    w32 = runs["fp32"]
    direction = torch.sign(w32 - w0)
    ulp = _ulp_bf16(w32)
    assert (direction != 0).float().mean().item() > 0.99
    bias = {
        mode: ((runs[mode].float() - w32) * direction / ulp).mean().item()
        for mode in ("stochastic", "nearest")
    }
    path = ((w32 - w0).abs() / ulp).mean().item()
    assert path > 1.0, path  # the fp32 weights moved more than an ulp in all
    assert abs(bias["stochastic"]) < 0.1, bias
    assert abs(bias["nearest"]) > 10 * max(abs(bias["stochastic"]), 0.01), bias


@pytest.mark.gpu
def test_direct_launch_equals_jit_launch() -> None:
    """The hot path's direct call of the compiled kernel computes what the JIT launch does."""
    need("cuda")

    g = torch.Generator().manual_seed(seed_for("direct-launch"))
    T, N, K = 320, 1024, 768
    dy = torch.randn(T, N, generator=g).to("cuda", torch.bfloat16)
    x = torch.randn(T, K, generator=g).to("cuda", torch.bfloat16)
    w0 = torch.randn(N, K, generator=g).cuda()
    outs = []
    for _ in range(3):  # the first launch of this specialisation compiles, the others go direct
        w, st = w0.clone(), [torch.zeros(N, K, device="cuda") for _ in range(2)]
        old = torch.empty(N, K, dtype=torch.bfloat16, device="cuda")
        sc = scalars(Rule.ADAMW, 2)
        forge_linear_step_(dy, x, w, st, Rule.ADAMW, sc, w_old_out=old, tune=False, check=False)
        outs.append((w, *st, old.view(torch.int16)))
    assert FAST_LAUNCH["on"], "this Triton's launcher refused the direct call"
    for a, b in zip(outs[0], outs[2], strict=True):
        assert torch.equal(a, b)
