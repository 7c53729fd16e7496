"""Host launcher: one fused weight-gradient + update step for one linear layer, and its tuner.

The tuner is ours rather than `triton.autotune`: the kernel updates W and its states in place,
so each candidate is timed on scratch copies (triton's `restore_value` would time its own
copies along with the kernel), and once a size is tuned the launch goes straight to the JIT
kernel with the chosen config, skipping the autotuner's per-call bookkeeping. `TUNE_LOG` keeps
every candidate's time for the benchmarks to report.

`forge_linear_step_` is the general entry (checks, config choice, specialisation key on every
call). `LayerLauncher` is the backward's hot path: one per fused layer, it does that work once
and then launches the compiled kernel directly with pre-bound arguments, because at the small
batches of fine-tuning the host's time to issue each layer's step, not the GPU, paces backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import triton
from triton import knobs

from . import reference
from .kernel import (
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

_TUNED: dict[tuple, triton.Config] = {}
TUNE_LOG: list[dict[str, Any]] = []


def triton_available(device: torch.device) -> bool:
    """The kernel runs on CUDA tensors, and on CPU tensors only through the interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and INTERPRET)


def _bucket(n: int) -> int:
    """Power-of-two bucket of a size: one tuning serves every size in the bucket."""
    return 1 << max(int(n) - 1, 0).bit_length()


def config_name(cfg: triton.Config) -> str:
    k = cfg.kwargs
    return (
        f"{k['BLOCK_N']}x{k['BLOCK_K']}x{k['BLOCK_T']} w{cfg.num_warps} s{cfg.num_stages}"
        f" split{k['EPI_SPLIT']} group{k['GROUP_N']}{' prefetch' if k['PREFETCH'] else ''}"
    )


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
) -> triton.Config:
    """The tile config for this launch: tuned (and remembered) for large layers on a GPU."""
    T, N = dy.shape
    K = x.shape[1]
    if tune is None:
        tune = weight.device.type == "cuda" and N * K >= AUTOTUNE_MIN_ELEMENTS and not ieee
    if not tune:
        return ieee_config() if ieee else default_config()
    key = (_bucket(T), _bucket(N * K), dy.dtype, weight.dtype, int(rule), w_old_out is not None)
    config = _TUNED.get(key)
    if config is None:
        config = _tune(key, dy, x, weight, states, rule, sc, stochastic, seed_key, w_old_out)
    return config


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
) -> None:
    """Update `weight` [N, K] and its fp32 `states` in place with dW = dyᵀ·x, never forming dW.

    dy: [T, N], x: [T, K], both fp32, bf16 or fp16 (the GEMM accumulates in fp32). weight: fp32,
    or bf16 updated in fp32 and rounded back (`stochastic` or to nearest, no master copy).
    `precision` ("ieee" or "tf32") applies to fp32 operands only. `w_old_out` (bf16, fp32
    weights only) receives the weight as it was before the update, rounded to nearest bf16.
    `tune`: pick the tile shape by timing (default: layers of AUTOTUNE_MIN_ELEMENTS weights or
    more, on a GPU); `config` forces one; `check=False` skips input validation (hot path).
    A layer stepped again and again is launched more cheaply by a `LayerLauncher`.
    """
    if check:
        check_inputs(dy, x, weight, states, rule, w_old_out)
        if precision not in ("ieee", "tf32"):
            raise ValueError(f"precision is 'ieee' or 'tf32', not {precision!r}")
    if not triton_available(weight.device):
        if w_old_out is not None:
            w_old_out.copy_(weight)
        reference.forge_linear_step_reference(
            dy, x, weight, states, rule, sc, stochastic=stochastic, seed_key=seed_key
        )
        return
    ieee = precision == "ieee" and dy.dtype == torch.float32
    if config is None:
        config = _pick_config(
            dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, tune
        )
    _launch(dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, config)


# Compiled kernels by everything Triton specialises a launch on, for the direct launch below.
_COMPILED: dict[tuple, Any] = {}
_FAST_LAUNCH = {"on": not INTERPRET}
_current_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _raw_stream(index: int) -> int:
    """The current CUDA stream's handle, as Triton's own launcher gets it."""
    if _current_raw_stream is not None:
        return _current_raw_stream(index)
    return torch.cuda.current_stream(index).cuda_stream


def _spec(v: int) -> tuple[bool, bool]:
    """What Triton specialises an integer argument on: == 1, and divisibility by 16."""
    return v == 1, v % 16 == 0


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
        **config.kwargs,
    }


def _hook_active(hook: Any) -> bool:
    """A launch hook that would run: triton 3.6 keeps None when unset, later ones an empty
    HookChain."""
    if hook is None:
        return False
    calls = getattr(hook, "calls", None)
    return calls is None or len(calls) > 0


def _hooks_set() -> bool:
    """Whether a launch hook (a profiler's) wants each launch's metadata."""
    rt = knobs.runtime
    return _hook_active(rt.launch_enter_hook) or _hook_active(rt.launch_exit_hook)


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
) -> Any:
    """Launch the fused kernel. The first launch of a specialisation goes through the JIT (which
    compiles); later ones call the compiled kernel directly, skipping the JIT's argument binding,
    which costs tens of µs a launch on a slow host — per layer, inside backward. Returns the
    compiled kernel when the direct launch is available (None otherwise)."""
    T, N = dy.shape
    K = x.shape[1]
    w_bf16 = weight.dtype == torch.bfloat16
    w_arg = weight.view(torch.int16) if w_bf16 else weight
    s1 = states[0]
    s2 = states[1] if len(states) > 1 else s1
    wold = w_old_out.view(torch.int16) if w_old_out is not None else w_arg
    grid = (_grid(N, K, config.kwargs), 1, 1)
    tensors = (dy, x, w_arg, s1, s2, wold)
    ints = (T, N, K, dy.stride(0), dy.stride(1), x.stride(0), x.stride(1))
    runtime = (*sc.kernel_args(), seed_key, 0, 0)
    upcast = INTERPRET and dy.dtype == torch.bfloat16
    constexprs = _constexprs(
        rule, sc.nesterov, w_bf16, stochastic, ieee, upcast, w_old_out is not None, config
    )
    if not _FAST_LAUNCH["on"]:
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
        tuple(_spec(v) for v in ints),
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _forge_linear_step_kernel[grid](
            *tensors,
            *ints,
            *runtime,
            num_warps=config.num_warps,
            num_stages=config.num_stages,
            **constexprs,
        )
        if compiled is not None and hasattr(compiled, "packed_metadata"):
            _COMPILED[key] = compiled
            return compiled
        return None
    # The JIT passes every bound argument, constexprs included, to the compiled launcher.
    args = (*tensors, *ints, *runtime, *constexprs.values())
    stream = _raw_stream(dy.device.index)
    try:
        compiled.run(
            grid[0],
            1,
            1,
            stream,
            compiled.function,
            compiled.packed_metadata,
            compiled.launch_metadata(grid, stream, *args),
            knobs.runtime.launch_enter_hook,
            knobs.runtime.launch_exit_hook,
            *args,
        )
    except (TypeError, SystemError, AttributeError):
        # This Triton's launcher takes other arguments: launch through the JIT from now on.
        _FAST_LAUNCH["on"] = False
        _launch(dy, x, weight, states, rule, sc, stochastic, seed_key, ieee, w_old_out, config)
        return None
    return compiled


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
        # (run, function, packed metadata, grid, device, N, K) of the compiled kernel
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
    ) -> None:
        """The fused step of `forge_linear_step_` for this layer's weight and states;
        `scalar_args` is `sc.kernel_args()` (callers cache it once a step for all layers)."""
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
        )
        direct = self._direct
        if sig != self._sig:
            self._prepare(sig, dy, x, sc, seed_key, precision, w_old_out)
            return
        if direct is None or _hooks_set():
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
            )
            return
        run, function, packed, grid, device, n, k = direct
        args = (
            dyp,
            xp,
            w_p,
            s1_p,
            s2_p,
            wop or w_p,
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
        )
        try:
            run(grid, 1, 1, _raw_stream(device), function, packed, None, None, None, *args)
        except (TypeError, SystemError, AttributeError):
            _FAST_LAUNCH["on"] = False
            self._direct = None
            self.__call__(dy, x, sc, scalar_args, seed_key, precision, w_old_out)

    def _prepare(
        self,
        sig: tuple,
        dy: torch.Tensor,
        x: torch.Tensor,
        sc: StepScalars,
        seed_key: int,
        precision: str,
        w_old_out: torch.Tensor | None,
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
        config = _pick_config(
            dy, x, weight, states, self.rule, sc, self.stochastic, seed_key, ieee, w_old_out, None
        )
        compiled = _launch(
            dy, x, weight, states, self.rule, sc, self.stochastic, seed_key, ieee, w_old_out, config
        )
        self._config = config
        self._sig = sig
        if compiled is None:
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
            ).values()
        )
        self._direct = (
            compiled.run,
            compiled.function,
            compiled.packed_metadata,
            _grid(n, k, config.kwargs),
            dy.device.index,
            n,
            k,
        )


def _tune(
    key: tuple,
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    stochastic: bool,
    seed_key: int,
    w_old_out: torch.Tensor | None,
) -> triton.Config:
    """Time every candidate config on scratch copies of W and its states; keep the fastest."""
    candidates = autotune_configs()
    if len(candidates) == 1:
        _TUNED[key] = candidates[0]
        return candidates[0]
    import triton.testing

    w_s = weight.clone()
    st_s = [s.clone() for s in states]
    old_s = torch.empty_like(w_old_out) if w_old_out is not None else None
    times: dict[str, float] = {}
    best, best_ms = candidates[0], float("inf")
    for cfg in candidates:

        def run(cfg: triton.Config = cfg) -> None:
            _launch(dy, x, w_s, st_s, rule, sc, stochastic, seed_key, False, old_s, cfg)

        try:
            run()  # compile
            ms = triton.testing.do_bench(run, warmup=10, rep=40, return_mode="median")
        except Exception as exc:  # a config the compiler or the GPU cannot take
            times[config_name(cfg)] = float("inf")
            TUNE_LOG.append({"key": repr(key), "config": config_name(cfg), "error": repr(exc)})
            continue
        times[config_name(cfg)] = ms
        if ms < best_ms:
            best, best_ms = cfg, ms
    TUNE_LOG.append({"key": repr(key), "times_ms": times, "best": config_name(best)})
    _TUNED[key] = best
    return best


def round_to_bf16_triton(x: torch.Tensor, *, stochastic: bool, seed_key: int = 0) -> torch.Tensor:
    """The fused epilogue's fp32 -> bf16 rounding on its own (for bit-exact tests)."""
    flat = x.contiguous().reshape(-1)
    out = torch.full(flat.shape, -1, dtype=torch.int16, device=x.device)
    block = 1024
    _round_to_bf16_kernel[(triton.cdiv(flat.numel(), block),)](
        flat, out, flat.numel(), seed_key, STOCHASTIC=stochastic, BLOCK=block
    )
    return out.view(torch.bfloat16).reshape(x.shape)
