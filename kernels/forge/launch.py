"""Host launchers and the autograd Function: one fused weight-gradient + update step for one
linear layer.

Configs are chosen by the runtime's `Tuner` rather than `triton.autotune`: the kernel updates W
and its states in place, so each candidate is timed on scratch copies, and once a size is tuned
the launch goes straight to the JIT kernel with the chosen config. `TUNE_LOG` keeps every
candidate's time for the benchmarks to report.

`forge_linear_step_` is the general entry (checks, config choice, specialisation key on every
call). `LayerLauncher` is the backward's hot path: one per fused layer, it does that work once
and then launches the compiled kernel directly (`kernels.runtime.launch.BoundLaunch`) with
pre-bound arguments, because at the small batches of fine-tuning the host's time to issue each
layer's step, not the GPU, paces backward.

`ForgeLinearFunction` computes y = x·Wᵀ + b; its backward returns dX (with the old W) and the
bias gradient, and hands dY and X to its `WeightSlot`, which runs the fused step. It returns no
gradient for W, so W never gets a `.grad`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
import triton

from kernels.runtime.device import kernels_run_on
from kernels.runtime.launch import FAST_LAUNCH, BoundLaunch, hooks_set, specialisation
from kernels.runtime.tune import Tuner

from . import hopper, reference
from .kernels import (
    INTERPRET,
    _forge_linear_step_kernel,
    _round_to_bf16_kernel,
    autotune_configs,
    default_config,
    ieee_config,
)
from .rules import Rule, StepScalars

# Layers at least this large (N*K) are tuned; smaller ones use `default_config()`.
AUTOTUNE_MIN_ELEMENTS = 1 << 22
GEMM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def triton_available(device: torch.device) -> bool:
    """The kernel runs on CUDA tensors, and on CPU tensors only through the interpreter."""
    return kernels_run_on(device)


def _bucket(n: int) -> int:
    """Power-of-two bucket of a size: one tuning serves every size in the bucket."""
    return 1 << max(int(n) - 1, 0).bit_length()


def config_name(cfg: triton.Config) -> str:
    if hopper.is_hopper_config(cfg):  # F2 hook: the Hopper kernel's configs name themselves
        return hopper.config_name(cfg)
    k = cfg.kwargs
    return (
        f"{k['BLOCK_N']}x{k['BLOCK_K']}x{k['BLOCK_T']} w{cfg.num_warps} s{cfg.num_stages}"
        f" split{k['EPI_SPLIT']} group{k['GROUP_N']}{' prefetch' if k['PREFETCH'] else ''}"
    )


TUNER: Tuner[triton.Config] = Tuner(name=config_name)
TUNE_LOG = TUNER.log


def check_inputs(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    w_old_out: torch.Tensor | None = None,
) -> None:
    """Raise a clear error for anything the fused kernel cannot take."""
    T, N = dy.shape
    T2, K = x.shape
    if T2 != T or tuple(weight.shape) != (N, K):
        raise ValueError(
            f"shapes do not chain: dy {tuple(dy.shape)}, x {tuple(x.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    if dy.dtype != x.dtype or dy.dtype not in GEMM_DTYPES:
        raise TypeError(f"dy and x must both be fp32, bf16 or fp16, got {dy.dtype}, {x.dtype}")
    if weight.dtype not in (torch.float32, torch.bfloat16):
        raise TypeError(f"FORGE updates fp32 or bf16 weights, not {weight.dtype}")
    if len(states) != rule.n_states:
        raise ValueError(f"{rule.name} keeps {rule.n_states} state tensors, got {len(states)}")
    for s in states:
        if s.dtype != torch.float32 or tuple(s.shape) != (N, K) or not s.is_contiguous():
            raise ValueError("states must be contiguous fp32 tensors shaped like the weight")
    if not weight.is_contiguous():
        raise ValueError("weight must be contiguous")
    devices = {t.device for t in (dy, x, weight, *states)}
    if w_old_out is not None:
        devices.add(w_old_out.device)
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if w_old_out is not None and (
        w_old_out.dtype != torch.bfloat16
        or tuple(w_old_out.shape) != (N, K)
        or not w_old_out.is_contiguous()
        or weight.dtype != torch.float32
    ):
        raise ValueError("w_old_out must be a contiguous bf16 [N, K] tensor (fp32 weights only)")
    if N * K >= 2**31:
        raise ValueError("weights of 2**31 elements or more are not supported (int32 offsets)")
    if T == 0:
        raise ValueError("no tokens: the gradient would be zero")


def _pick_config(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    stochastic: bool,
    seed_key: int,
    ieee: bool,
    w_old_out: torch.Tensor | None,
    tune: bool | None,
    scalars: torch.Tensor | None = None,
) -> triton.Config:
    """The tile config for this launch: tuned (and remembered) for large layers on a GPU."""
    T, N = dy.shape
    K = x.shape[1]
    if tune is None:
        tune = weight.device.type == "cuda" and N * K >= AUTOTUNE_MIN_ELEMENTS and not ieee
    if not tune:
        return ieee_config() if ieee else default_config()
    replayed = scalars is not None  # a capturable step: no host time per launch once captured
    key = (
        _bucket(T),
        _bucket(N * K),
        dy.dtype,
        weight.dtype,
        int(rule),
        w_old_out is not None,
        replayed,
    )

    def launch(cfg: triton.Config, scratch: Sequence[torch.Tensor]) -> None:
        w_s, *st_s = scratch[: 1 + len(states)]
        old_s = scratch[-1] if w_old_out is not None else None
        _launch(dy, x, w_s, st_s, rule, sc, stochastic, seed_key, False, old_s, cfg, scalars)

    inplace = [weight, *states] + ([w_old_out] if w_old_out is not None else [])
    candidates = autotune_configs()
    eligible = hopper.hopper_eligible(T, N, K, dy.dtype, dy.device, replayed=replayed)
    if eligible and hopper.operands_fit(dy, x):
        candidates = candidates + hopper.configs()  # F2 hook: large T, timed like the others
    return TUNER.choose(key, candidates, launch, inplace)


def forge_linear_step_(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    *,
    stochastic: bool = True,
    seed_key: int = 0,
    precision: str = "ieee",
    w_old_out: torch.Tensor | None = None,
    tune: bool | None = None,
    config: triton.Config | None = None,
    check: bool = True,
    scalars: torch.Tensor | None = None,
) -> None:
    """Update `weight` [N, K] and its fp32 `states` in place with dW = dyᵀ·x, never forming dW.

    dy: [T, N], x: [T, K], both fp32, bf16 or fp16 (the GEMM accumulates in fp32). weight: fp32,
    or bf16 updated in fp32 and rounded back (`stochastic` or to nearest, no master copy).
    `precision` ("ieee" or "tf32") applies to fp32 operands only. `w_old_out` (bf16, fp32
    weights only) receives the weight as it was before the update, rounded to nearest bf16.
    `tune`: pick the tile shape by timing (default: layers of AUTOTUNE_MIN_ELEMENTS weights or
    more, on a GPU); `config` forces one; `check=False` skips input validation (hot path).
    `scalars` (a capturable optimizer's `DeviceScalars.buffer`): the kernel reads the step's
    scalars and step count from it instead of `sc` (only `sc.nesterov` is used), and `seed_key`
    is the parameter's key (`reference.sr_param_key`, as int32 bits).
    A layer stepped again and again is launched more cheaply by a `LayerLauncher`.
    """
    if check:
        check_inputs(dy, x, weight, states, rule, w_old_out)
        if precision not in ("ieee", "tf32"):
            raise ValueError(f"precision is 'ieee' or 'tf32', not {precision!r}")
    if not triton_available(weight.device):
        if w_old_out is not None:
            w_old_out.copy_(weight)
        if scalars is not None:
            reference.forge_linear_step_from_buffer(
                dy, x, weight, states, rule, scalars, nesterov=sc.nesterov,
                stochastic=stochastic, param_key=seed_key,
            )  # fmt: skip
            return
        reference.forge_linear_step_reference(
            dy, x, weight, states, rule, sc, stochastic=stochastic, seed_key=seed_key
        )
        return
    ieee = precision == "ieee" and dy.dtype == torch.float32
    if config is None:
        config = _pick_config(
            dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, tune, scalars
        )
    _launch(dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, config, scalars)


# Compiled kernels by everything Triton specialises a launch on, for the direct launch below.
_COMPILED: dict[tuple, BoundLaunch] = {}
# The scalar arguments of a launch that reads its scalars from the device buffer (ignored).
UNUSED_SCALARS = StepScalars(lr=0.0).kernel_args()


def _grid(N: int, K: int, meta: dict[str, Any]) -> int:
    """Programs in the launch: one per [BLOCK_N, BLOCK_K] tile of W."""
    return -(-N // meta["BLOCK_N"]) * -(-K // meta["BLOCK_K"])


def _constexprs(
    rule: Rule,
    nesterov: bool,
    w_bf16: bool,
    stochastic: bool,
    ieee: bool,
    upcast: bool,
    write_old: bool,
    config: triton.Config,
    from_ptr: bool = False,
) -> dict[str, Any]:
    """The kernel's constexpr arguments, in its signature's order."""
    return {
        "RULE": int(rule),
        "NESTEROV": bool(nesterov),
        "W_BF16": w_bf16,
        "STOCHASTIC": bool(stochastic),
        "DOT_IEEE": ieee,
        "UPCAST": upcast,
        "WRITE_OLD": write_old,
        "SCALARS_FROM_PTR": from_ptr,
        **config.kwargs,
    }


def _launch(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    stochastic: bool,
    seed_key: int,
    ieee: bool,
    w_old_out: torch.Tensor | None,
    config: triton.Config,
    scalars: torch.Tensor | None = None,
) -> Any:
    """Launch the fused kernel. The first launch of a specialisation goes through the JIT (which
    compiles); later ones call the compiled kernel directly, skipping the JIT's argument binding,
    which costs tens of µs a launch on a slow host — per layer, inside backward. Returns the
    compiled kernel, bound, when the direct launch is available (None otherwise)."""
    if hopper.is_hopper_config(config):  # F2 hook: a tuned config of kernels/forge/hopper.py
        if hopper.operands_fit(dy, x) and not ieee:
            args = (dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out)
            return hopper.launch(*args, config, scalars)
        config = default_config()  # operands TMA cannot take: the classic kernel
    T, N = dy.shape
    K = x.shape[1]
    w_bf16 = weight.dtype == torch.bfloat16
    w_arg = weight.view(torch.int16) if w_bf16 else weight
    s1 = states[0]
    s2 = states[1] if len(states) > 1 else s1
    wold = w_old_out.view(torch.int16) if w_old_out is not None else w_arg
    grid = (_grid(N, K, config.kwargs), 1, 1)
    tensors = (dy, x, w_arg, s1, s2, wold, w_arg if scalars is None else scalars)
    ints = (T, N, K, dy.stride(0), dy.stride(1), x.stride(0), x.stride(1))
    runtime = (*(sc.kernel_args() if scalars is None else UNUSED_SCALARS), seed_key, 0, 0)
    upcast = INTERPRET and dy.dtype == torch.bfloat16
    constexprs = _constexprs(
        rule,
        sc.nesterov,
        w_bf16,
        stochastic,
        ieee,
        upcast,
        w_old_out is not None,
        config,
        scalars is not None,
    )
    if not FAST_LAUNCH["on"]:
        _forge_linear_step_kernel[grid](
            *tensors,
            *ints,
            *runtime,
            num_warps=config.num_warps,
            num_stages=config.num_stages,
            **constexprs,
        )
        return None
    key = (
        dy.device.index,
        config.num_warps,
        config.num_stages,
        tuple(constexprs.values()),
        tuple(t.dtype for t in tensors),
        tuple(t.data_ptr() % 16 == 0 for t in tensors),
        tuple(specialisation(v) for v in ints),
    )
    bound = _COMPILED.get(key)
    if bound is None:
        handle = _forge_linear_step_kernel[grid](
            *tensors,
            *ints,
            *runtime,
            num_warps=config.num_warps,
            num_stages=config.num_stages,
            **constexprs,
        )
        bound = BoundLaunch.of(handle, dy.device.index)
        if bound is not None:
            _COMPILED[key] = bound
        return bound
    # The JIT passes every bound argument, constexprs included, to the compiled launcher.
    if not bound.with_hooks(grid, *tensors, *ints, *runtime, *constexprs.values()):
        # This Triton's launcher takes other arguments: launch through the JIT from now on.
        _launch(
            dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, config, scalars
        )
        return None
    return bound


class LayerLauncher:
    """One layer's fused step, with what stays fixed between its steps bound once.

    `forge_linear_step_` pays per call for input checks, the config choice, the constexprs and
    the specialisation key (~20 µs of Python). A layer's weight, states, rule and shapes do not
    change between steps, so the first call does all that (and launches through the general
    path); later calls compare a short signature — token-count bucket, dtypes, strides, pointer
    alignment, precision — and call the compiled launcher with integer device pointers, which
    also spares the launcher a `data_ptr()` call and a driver pointer query per tensor. Anything
    new in the signature sends the call back through the general path, checks included.
    """

    __slots__ = (
        "_config",
        "_direct",
        "_sig",
        "_tail",
        "rule",
        "states",
        "stochastic",
        "weight",
    )

    def __init__(
        self,
        weight: torch.Tensor,
        states: Sequence[torch.Tensor],
        rule: Rule,
        *,
        stochastic: bool,
    ) -> None:
        self.weight = weight
        self.states = tuple(states)
        self.rule = rule
        self.stochastic = stochastic
        self._sig: tuple | None = None
        self._config: triton.Config | None = None
        # (bound launch, grid, N, K) of the compiled kernel
        self._direct: tuple | None = None
        self._tail: tuple = ()  # constexpr values, after the run-time arguments

    def bound_to(self, weight: torch.Tensor, states: Sequence[torch.Tensor]) -> bool:
        """Whether this launcher steps exactly these tensors (the optimizer may replace them).
        Rules keep one or two states, so the first and the last say which."""
        mine = self.states
        return (
            weight is self.weight
            and len(states) == len(mine)
            and states[0] is mine[0]
            and states[-1] is mine[-1]
        )

    def __call__(
        self,
        dy: torch.Tensor,
        x: torch.Tensor,
        sc: StepScalars,
        scalar_args: tuple[float | int, ...],
        seed_key: int,
        precision: str,
        w_old_out: torch.Tensor | None,
        scalars: torch.Tensor | None = None,
    ) -> None:
        """The fused step of `forge_linear_step_` for this layer's weight and states;
        `scalar_args` is `sc.kernel_args()` (callers cache it once a step for all layers).
        With `scalars` (a capturable optimizer's device buffer) the kernel reads the step's
        scalars there and `seed_key` is the parameter's key."""
        T = dy.shape[0]
        dy_stride = dy.stride()
        x_stride = x.stride()
        dyp = dy.data_ptr()
        xp = x.data_ptr()
        wop = 0 if w_old_out is None else w_old_out.data_ptr()
        states = self.states
        w_p = self.weight.data_ptr()
        s1_p = states[0].data_ptr()
        s2_p = states[-1].data_ptr()
        sig = (
            (T - 1).bit_length(),  # the tuner's bucket
            T == 1,
            T % 16 == 0,
            x.shape[0] == T,
            dy.dtype,
            x.dtype,
            dy_stride,
            x_stride,
            dyp % 16 == 0,
            xp % 16 == 0,
            wop % 16 == 0,
            w_old_out is None,
            precision,
            sc.nesterov,
            # Where W and its states live (an assignment to `.data` moves them).
            w_p,
            s1_p,
            s2_p,
            scalars is None,
        )
        direct = self._direct
        if sig != self._sig:
            self._prepare(sig, dy, x, sc, seed_key, precision, w_old_out, scalars)
            return
        if direct is None or hooks_set():
            _launch(
                dy,
                x,
                self.weight,
                self.states,
                self.rule,
                sc,
                self.stochastic,
                seed_key,
                precision == "ieee" and dy.dtype == torch.float32,
                w_old_out,
                self._config,
                scalars,
            )
            return
        bound, grid, n, k = direct
        if not bound(
            grid,
            dyp,
            xp,
            w_p,
            s1_p,
            s2_p,
            wop or w_p,
            w_p if scalars is None else scalars.data_ptr(),
            T,
            n,
            k,
            *dy_stride,
            *x_stride,
            *scalar_args,
            seed_key,
            0,
            0,
            *self._tail,
        ):
            self._direct = None  # refused: the general path from now on
            self.__call__(dy, x, sc, scalar_args, seed_key, precision, w_old_out, scalars)

    def _prepare(
        self,
        sig: tuple,
        dy: torch.Tensor,
        x: torch.Tensor,
        sc: StepScalars,
        seed_key: int,
        precision: str,
        w_old_out: torch.Tensor | None,
        scalars: torch.Tensor | None,
    ) -> None:
        """A new signature: check, pick the config, launch through the general path, and bind
        what later calls need to launch directly."""
        self._sig = None
        self._direct = None
        weight, states = self.weight, self.states
        check_inputs(dy, x, weight, states, self.rule, w_old_out)
        if precision not in ("ieee", "tf32"):
            raise ValueError(f"precision is 'ieee' or 'tf32', not {precision!r}")
        if not triton_available(weight.device):
            raise ValueError("LayerLauncher runs the Triton kernel: CUDA tensors (or interpreter)")
        ieee = precision == "ieee" and dy.dtype == torch.float32
        rule, stochastic = self.rule, self.stochastic
        config = _pick_config(
            dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, None, scalars
        )
        bound = _launch(
            dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, config, scalars
        )
        self._config = config
        self._sig = sig
        if bound is None:
            return
        n, k = weight.shape
        upcast = INTERPRET and dy.dtype == torch.bfloat16
        self._tail = tuple(
            _constexprs(
                self.rule,
                sc.nesterov,
                weight.dtype == torch.bfloat16,
                self.stochastic,
                ieee,
                upcast,
                w_old_out is not None,
                config,
                scalars is not None,
            ).values()
        )
        self._direct = (bound, (_grid(n, k, config.kwargs), 1, 1), n, k)


def round_to_bf16_triton(x: torch.Tensor, *, stochastic: bool, seed_key: int = 0) -> torch.Tensor:
    """The fused epilogue's fp32 -> bf16 rounding on its own (for bit-exact tests)."""
    flat = x.contiguous().reshape(-1)
    out = torch.full(flat.shape, -1, dtype=torch.int16, device=x.device)
    block = 1024
    _round_to_bf16_kernel[(triton.cdiv(flat.numel(), block),)](
        flat, out, flat.numel(), seed_key, STOCHASTIC=stochastic, BLOCK=block
    )
    return out.view(torch.bfloat16).reshape(x.shape)


class WeightSlot(Protocol):
    """What the backward needs from the optimizer that owns a weight."""

    def check_can_update(self) -> None:
        """Raise if the weight was already stepped since the last opt.step()."""

    def fused_update(
        self, dy: torch.Tensor, x: torch.Tensor, w_old_out: torch.Tensor | None = None
    ) -> None:
        """Update the weight in place from dY [T, N] and X [T, K] (writing the old W, bf16,
        into `w_old_out` when given)."""


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for this device, or None outside autocast."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


class ForgeLinearFunction(torch.autograd.Function):
    """y = x·Wᵀ + b, with the optimizer step for W fused into the weight-gradient GEMM.

    Under bf16 autocast with fp32 weights, the forward's bf16 copy of W is not kept for the
    backward (autocast would keep it): the fused kernel writes the pre-update W in bf16 as it
    updates, and dX is computed from that, so no weight copy lives between forward and backward.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        slot: WeightSlot,
    ) -> torch.Tensor:
        cast = _autocast_dtype(x.device.type)
        with torch.autocast(x.device.type, enabled=False):
            if cast is not None:
                # As autocast would: the GEMMs read low-precision copies of x and W.
                x_c, w_c = x.to(cast), weight.to(cast)
                b_c = bias.to(cast) if bias is not None else None
            else:
                x_c, w_c, b_c = x, weight, bias
            y = F.linear(x_c, w_c, b_c)
        ctx.old_w_from_kernel = w_c is not weight and cast == torch.bfloat16
        if ctx.old_w_from_kernel:
            ctx.save_for_backward(x_c)
        else:
            ctx.save_for_backward(x_c, w_c)
        ctx.slot = slot
        ctx.x_dtype = x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.w_shape = weight.shape
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, None, Any, None]:  # type: ignore[override]
        slot = ctx.slot
        slot.check_can_update()  # before autograd's own check of the saved (old) weight
        x_c, *rest = ctx.saved_tensors
        dx, db = fused_backward(
            slot,
            dy,
            x_c,
            None if ctx.old_w_from_kernel else rest[0],
            ctx.w_shape,
            ctx.x_dtype,
            ctx.bias_dtype,
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[2],
        )
        return dx, None, db, None


def fused_backward(
    slot: WeightSlot,
    dy: torch.Tensor,
    x_c: torch.Tensor,
    w_c: torch.Tensor | None,
    w_shape: tuple[int, int],
    x_dtype: torch.dtype,
    bias_dtype: torch.dtype | None,
    needs_dx: bool,
    needs_db: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(dX, db) of y = x_c·w_cᵀ + b, the weight stepped by `slot` (ForgeLinearFunction's and the
    compiled op's backward). `w_c` is the weight as the forward's GEMM read it, or None to take
    the old W (bf16) from the fused kernel itself."""
    # Runs once per layer per step on the host: every op skipped when not needed counts
    # (2-D inputs need no reshapes, matching dtypes no casts).
    n_out, n_in = w_shape
    flat = x_c.dim() == 2
    dy2 = dy if dy.dim() == 2 else dy.reshape(-1, n_out)
    if dy2.dtype != x_c.dtype:
        dy2 = dy2.to(x_c.dtype)
    if not dy2.is_contiguous():
        dy2 = dy2.contiguous()
    x2 = x_c if flat else x_c.reshape(-1, n_in)
    db = None
    if needs_db:
        db = dy2.sum(0, dtype=torch.float32).to(bias_dtype)
    dx = None
    if w_c is None:
        if needs_dx:
            w_old = torch.empty((n_out, n_in), dtype=torch.bfloat16, device=dy2.device)
            slot.fused_update(dy2, x2, w_old)
            dx = torch.mm(dy2, w_old)  # the old W, as the fused kernel found it
        else:
            slot.fused_update(dy2, x2)
    else:
        if needs_dx:
            # Queued before the update on the same stream: dX = dY·W uses the old W.
            dx = torch.mm(dy2, w_c)
        slot.fused_update(dy2, x2)
    if dx is not None:
        if not flat:
            dx = dx.reshape(*x_c.shape[:-1], n_in)
        if dx.dtype != x_dtype:
            dx = dx.to(x_dtype)
    return dx, db


def forge_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, slot: WeightSlot
) -> torch.Tensor:
    """F.linear whose backward steps `weight` through `slot` (plain F.linear without grad)."""
    if not (torch.is_grad_enabled() and weight.requires_grad):
        return F.linear(x, weight, bias)
    return ForgeLinearFunction.apply(x, weight, bias, slot)
