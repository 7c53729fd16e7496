"""The element-wise update rules FORGE can fold into a weight-gradient GEMM, and their scalars.

A rule is applied to one (W, g, state) tile at a time, so it must be element-wise: AdamW, Lion and
SGD with momentum are. The host turns a parameter group and a step count into `StepScalars` once
per step; the Triton epilogue and the PyTorch reference read the same numbers, so the two compute
the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum


class Rule(IntEnum):
    """Which update the epilogue applies (a constexpr of the kernel)."""

    ADAMW = 0
    LION = 1
    SGD_MOMENTUM = 2

    @property
    def n_states(self) -> int:
        """fp32 state tensors the rule keeps per weight: AdamW m and v, Lion m, SGD a buffer."""
        return 2 if self is Rule.ADAMW else 1

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the states, as torch's own optimizers call them (so state dicts line up)."""
        return {
            Rule.ADAMW: ("exp_avg", "exp_avg_sq"),
            Rule.LION: ("exp_avg",),
            Rule.SGD_MOMENTUM: ("momentum_buffer",),
        }[self]


@dataclass(slots=True)
class StepScalars:
    """Every scalar one update step needs, computed on the host in float64 like torch does.

    Fields a rule does not use stay at their neutral values.
    """

    lr: float
    decay: float = 1.0  # decoupled weight decay factor, 1 - lr * weight_decay (AdamW, Lion)
    weight_decay: float = 0.0  # coupled weight decay, g += wd * W (SGD)
    beta1: float = 0.0  # AdamW/Lion beta1; SGD momentum
    beta2: float = 0.0
    eps: float = 0.0
    step_size: float = 0.0  # AdamW: lr / (1 - beta1**step)
    bc2_sqrt: float = 1.0  # AdamW: sqrt(1 - beta2**step)
    dampening: float = 0.0  # SGD
    first_step: bool = False  # SGD: the momentum buffer starts as the first gradient
    nesterov: bool = False  # SGD

    def kernel_args(self) -> tuple[float | int, ...]:
        """The run-time scalars in the order `_forge_linear_step_kernel` takes them.

        Floats always (a hyper-parameter given as the int 0 would otherwise compile another
        kernel variant, with an integer argument the direct launch would then mistype).
        """
        return (
            float(self.lr),
            float(self.decay),
            float(self.weight_decay),
            float(self.beta1),
            float(self.beta2),
            float(self.eps),
            float(self.step_size),
            float(self.bc2_sqrt),
            float(self.dampening),
            int(self.first_step),
        )

    @staticmethod
    def adamw(
        *, step: int, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
    ) -> StepScalars:
        """AdamW with decoupled weight decay and bias correction, step counted from 1."""
        beta1, beta2 = betas
        return StepScalars(
            lr=lr,
            decay=1.0 - lr * weight_decay,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            step_size=lr / (1.0 - beta1**step),
            bc2_sqrt=math.sqrt(1.0 - beta2**step),
        )

    @staticmethod
    def lion(*, lr: float, betas: tuple[float, float], weight_decay: float) -> StepScalars:
        """Lion (Chen et al. 2023): sign of an interpolated momentum, decoupled weight decay."""
        return StepScalars(lr=lr, decay=1.0 - lr * weight_decay, beta1=betas[0], beta2=betas[1])

    @staticmethod
    def sgd_momentum(
        *,
        step: int,
        lr: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        nesterov: bool,
    ) -> StepScalars:
        """torch.optim.SGD with momentum > 0 (coupled weight decay, optional Nesterov)."""
        return StepScalars(
            lr=lr,
            weight_decay=weight_decay,
            beta1=momentum,
            dampening=dampening,
            first_step=step == 1,
            nesterov=nesterov,
        )
