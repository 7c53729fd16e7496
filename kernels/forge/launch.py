"""Host launcher: one fused weight-gradient + update step for one linear layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton

from . import reference
from .kernel import (
    INTERPRET,
    _forge_linear_step_autotuned,
    _forge_linear_step_kernel,
    _round_to_bf16_kernel,
    default_config,
    ieee_config,
)
from .rules import Rule, StepScalars

# Layers at least this large (N*K) are autotuned; smaller ones use `default_config()`.
AUTOTUNE_MIN_ELEMENTS = 1 << 22


def triton_available(device: torch.device) -> bool:
    """The kernel runs on CUDA tensors, and on CPU tensors only through the interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and INTERPRET)


def _bucket(n: int) -> int:
    """Power-of-two bucket of a size, the autotuner's cache key (one tuning per bucket)."""
    return 1 << max(int(n) - 1, 0).bit_length()


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
    tune: bool | None = None,
    config: triton.Config | None = None,
) -> None:
    """Update `weight` [N, K] and its fp32 `states` in place with dW = dyᵀ·x, never forming dW.

    dy: [T, N], x: [T, K], both fp32 or both bf16 (the GEMM accumulates in fp32). weight: fp32,
    or bf16 updated in fp32 and rounded back (`stochastic` or to nearest, no master copy).
    `precision` ("ieee" or "tf32") applies to fp32 operands only. `tune`: autotune the tile
    shape (default: for layers of at least AUTOTUNE_MIN_ELEMENTS weights, on a GPU).
    """
    T, N = dy.shape
    T2, K = x.shape
    if T2 != T or tuple(weight.shape) != (N, K):
        raise ValueError(
            f"shapes do not chain: dy {tuple(dy.shape)}, x {tuple(x.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    if dy.dtype != x.dtype or dy.dtype not in (torch.float32, torch.bfloat16):
        raise TypeError(f"dy and x must both be fp32 or both bf16, got {dy.dtype}, {x.dtype}")
    if weight.dtype not in (torch.float32, torch.bfloat16):
        raise TypeError(f"FORGE updates fp32 or bf16 weights, not {weight.dtype}")
    if len(states) != rule.n_states:
        raise ValueError(f"{rule.name} keeps {rule.n_states} state tensors, got {len(states)}")
    for s in states:
        if s.dtype != torch.float32 or tuple(s.shape) != (N, K) or not s.is_contiguous():
            raise ValueError("states must be contiguous fp32 tensors shaped like the weight")
    if not weight.is_contiguous():
        raise ValueError("weight must be contiguous")
    if N * K >= 2**31:
        raise ValueError("weights of 2**31 elements or more are not supported (int32 offsets)")
    if precision not in ("ieee", "tf32"):
        raise ValueError(f"precision is 'ieee' or 'tf32', not {precision!r}")
    if T == 0:
        raise ValueError("no tokens: the gradient would be zero")

    if not triton_available(weight.device):
        reference.forge_linear_step_reference(
            dy, x, weight, states, rule, sc, stochastic=stochastic, seed_key=seed_key
        )
        return

    w_arg = weight.view(torch.int16) if weight.dtype == torch.bfloat16 else weight
    s1 = states[0]
    s2 = states[1] if rule.n_states > 1 else states[0]
    ieee = precision == "ieee" and dy.dtype == torch.float32
    if tune is None:
        tune = weight.device.type == "cuda" and N * K >= AUTOTUNE_MIN_ELEMENTS and not ieee
    if config is not None:
        tune = False
    else:
        config = ieee_config() if ieee else default_config()
    fixed = {} if tune else {k: v for k, v in config.all_kwargs().items() if v is not None}
    kernel = _forge_linear_step_autotuned if tune else _forge_linear_step_kernel

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(N, meta["BLOCK_N"]) * triton.cdiv(K, meta["BLOCK_K"]),)

    kernel[grid](
        dy,
        x,
        w_arg,
        s1,
        s2,
        T,
        N,
        K,
        dy.stride(0),
        dy.stride(1),
        x.stride(0),
        x.stride(1),
        sc.lr,
        sc.decay,
        sc.weight_decay,
        sc.beta1,
        sc.beta2,
        sc.eps,
        sc.step_size,
        sc.bc2_sqrt,
        sc.dampening,
        int(sc.first_step),
        seed_key,
        _bucket(T),
        _bucket(N * K),
        RULE=int(rule),
        NESTEROV=bool(sc.nesterov),
        W_BF16=weight.dtype == torch.bfloat16,
        STOCHASTIC=bool(stochastic),
        DOT_IEEE=ieee,
        UPCAST=INTERPRET and dy.dtype == torch.bfloat16,
        **fixed,
    )


def round_to_bf16_triton(x: torch.Tensor, *, stochastic: bool, seed_key: int = 0) -> torch.Tensor:
    """The fused epilogue's fp32 -> bf16 rounding on its own (for bit-exact tests)."""
    flat = x.contiguous().reshape(-1)
    out = torch.full(flat.shape, -1, dtype=torch.int16, device=x.device)
    block = 1024
    _round_to_bf16_kernel[(triton.cdiv(flat.numel(), block),)](
        flat, out, flat.numel(), seed_key, STOCHASTIC=stochastic, BLOCK=block
    )
    return out.view(torch.bfloat16).reshape(x.shape)
