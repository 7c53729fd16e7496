"""How close a fused step must come to the fp32 reference: KERNELS.md's low-precision rule.

The fused kernels multiply bf16/fp16 operands on the tensor cores with fp32 accumulation over
all T tokens; the reference (`reference.weight_grad`) forms dW with a full-fp32 GEMM. Their
gap grows with the accumulation length T (on Hopper roughly linearly: the tensor cores' fp32
accumulation truncates, a bias of up to an fp32 ulp per k=16 MMA step, T/16 steps), so a fixed
1e-5 holds at T=2048 and not at T=8192 (dW relative error ~9e-6 there, v ~ dW² twice that).
The bound therefore follows the rule `max|kern − ref32| ≤ 2·max|torch_lowp − ref32| + atol`,
with torch_lowp the same step computed by plain PyTorch in the kernel's precision (cuBLAS
multiplying the same bf16/fp16 operands with fp32 accumulation and output), read norm-wise
with the fp32 rule's 1e-5 relative as atol:

    rel_err(kern, ref32) ≤ 2·rel_err(lowp, ref32) + 1e-5

Where torch has no such GEMM (the CPU, whose interpreter kernel multiplies in fp32) lowp is the
reference itself and the bound is the plain fp32 rule. Two kernels on the same inputs sum the
same exact products over T in the same order, so they must agree far more tightly
(`AGREE_REL`) than either agrees with the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kernels.runtime.testing import rel_err

from . import reference
from .rules import Rule, StepScalars

FP32_REL = 1e-5  # KERNELS.md's fp32 rule: the floor (atol) of the bound
# Two kernels on the same operands: same products, same order over T, same update math;
# only the epilogue's contractions may differ (a few fp32 ulps, 2^-23 ≈ 1.2e-7 each).
AGREE_REL = 1e-6
# Elements a sign-based rule may send the other way at a gradient within rounding of zero.
FLIPS_PER_ELEMENT = 1e-4


def lowp_weight_grad(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dW = dYᵀ·X as plain PyTorch forms it in the kernel's precision: the low-precision
    operands multiplied by cuBLAS with fp32 accumulation and fp32 output. Where torch has no
    such `mm` (the CPU), the fp32 product: the interpreter's kernel multiplies in fp32 too."""
    if dy.is_cuda and dy.dtype in (torch.bfloat16, torch.float16) and x.dtype == dy.dtype:
        try:
            return torch.mm(dy.t(), x, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):
            pass
    return reference.weight_grad(dy, x)


def lowp_step_(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    states: Sequence[torch.Tensor],
    rule: Rule,
    sc: StepScalars,
    **options: Any,
) -> None:
    """`reference.forge_linear_step_reference` with torch's low-precision dW (torch_lowp)."""
    reference.forge_linear_step_reference(
        dy, x, weight, states, rule, sc, grad=lowp_weight_grad, **options
    )


def rule_bound(lowp: torch.Tensor, ref32: torch.Tensor) -> float:
    """The norm-wise bound on rel_err(kern, ref32): 2·rel_err(lowp, ref32) + 1e-5."""
    return 2 * rel_err(lowp, ref32) + FP32_REL


def step_errors(
    kern: Sequence[torch.Tensor], ref32: Sequence[torch.Tensor], lowp: Sequence[torch.Tensor]
) -> list[tuple[float, float]]:
    """(rel_err(kern, ref32), its bound) for each tensor of a step (W, then the states)."""
    return [(rel_err(k, r), rule_bound(lo, r)) for k, r, lo in zip(kern, ref32, lowp, strict=True)]


def within_rule(
    kern: Sequence[torch.Tensor], ref32: Sequence[torch.Tensor], lowp: Sequence[torch.Tensor]
) -> bool:
    """Every tensor of the step within the rule's bound (NaN fails)."""
    return all(e <= b for e, b in step_errors(kern, ref32, lowp))


def assert_step_close(
    got: torch.Tensor, want: torch.Tensor, lowp: torch.Tensor, max_step: float
) -> None:
    """One updated tensor (fp32 W or a state) against the reference, by the rule.

    Norm-wise: rel_err ≤ 2·rel_err(lowp, ref32) + 1e-5. Element-wise: within 1e-5 absolute and
    relative plus twice torch_lowp's own element error (its largest but for the handful of sign
    flips allowed below), except at a handful of elements (one in 10^4): where a gradient is
    within rounding of zero a sign-based rule (Adam's first steps, Lion) may go the other way;
    those stay under `max_step`.
    """
    err, bound = rel_err(got, want), rule_bound(lowp, want)
    assert err <= bound, f"rel_err {err:.3g} > bound {bound:.3g}"
    handful = int(3 + FLIPS_PER_ELEMENT * want.numel())
    lowp_diff = (lowp.double() - want.double()).abs().flatten()
    k = min(handful + 1, lowp_diff.numel())
    lowp_scale = lowp_diff.topk(k).values[-1].item()
    diff = (got.double() - want.double()).abs()
    off = diff > 1e-5 + 1e-5 * want.double().abs() + 2 * lowp_scale
    n_off = int(off.sum().item())
    assert n_off <= handful, f"{n_off} elements off (at most {handful})"
    assert diff.max().item() <= max_step, f"max diff {diff.max().item():.3g} > {max_step:.3g}"


def assert_kernels_agree(
    got: torch.Tensor, other: torch.Tensor, max_step: float, rel: float = AGREE_REL
) -> None:
    """Two kernels' step on the same inputs: norm-wise within `rel`; element-wise within `rel`
    of the element's magnitude plus the tensor's RMS (an element the sum cancelled to near zero
    keeps the absolute rounding of its large summands), but for a handful of sign flips, each
    under `max_step`."""
    err = rel_err(got, other)
    assert err <= rel, f"kernels disagree: rel_err {err:.3g} > {rel:.3g}"
    o = other.double()
    diff = (got.double() - o).abs()
    off = diff > rel * (o.abs() + o.square().mean().sqrt())
    handful = int(3 + FLIPS_PER_ELEMENT * other.numel())
    assert int(off.sum().item()) <= handful, int(off.sum().item())
    assert diff.max().item() <= max_step
