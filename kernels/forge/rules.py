"""The element-wise update rules FORGE can fold into a weight-gradient GEMM, and their scalars.

A rule is applied to one (W, g, state) tile at a time, so it must be element-wise: AdamW, Lion and
SGD with momentum are. The host turns a parameter group and a step count into `StepScalars` once
per step; the Triton epilogue and the PyTorch reference read the same numbers, so the two compute
the same function.

A capturable optimizer keeps them on the device instead (`DeviceScalars`): the same formulas,
evaluated by tensor ops in float64 on a device step count, stored as fp32 in a small buffer the
kernel reads, so a CUDA graph replay computes the next step's scalars itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import torch


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

    def values(self) -> tuple[Any, ...]:
        """The fields `kernel_args` passes, as they are (floats, or 0-d tensors on the device)."""
        return (
            self.lr,
            self.decay,
            self.weight_decay,
            self.beta1,
            self.beta2,
            self.eps,
            self.step_size,
            self.bc2_sqrt,
            self.dampening,
            self.first_step,
        )

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
            bc2_sqrt=_sqrt(1.0 - beta2**step),
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


def _sqrt(x: Any) -> Any:
    """math.sqrt on a float (the host path, unchanged), Tensor.sqrt on a device scalar."""
    return math.sqrt(x) if isinstance(x, float) else x.sqrt()


N_SCALAR_FIELDS = 10  # the fields of `StepScalars.values()`
STEP_SLOT = 10  # the step count's slot (int32 bits), after them
N_SCALAR_SLOTS = 16  # the buffer's length (64 B)


class DeviceScalars:
    """One parameter group's step count and step scalars on its device (capturable mode).

    `step` is a float64 0-d tensor (exact to 2**53 steps); `buffer` holds the fused kernel's
    scalars as fp32, in the order of `StepScalars.values()`, and the step as int32 bits in
    slot STEP_SLOT (`kernels.load_step_scalars` reads it); `values` the same in float64 (the
    step as a float), for the PyTorch path, which rounds each scalar to fp32 where torch's
    optimizers do (`1 - beta2` is formed in float64, as there, not from an fp32 beta2).
    `write(sc)` takes a `StepScalars` whose step-dependent fields are device tensors
    (computed by the same factories from the device step) and whose other fields are host
    floats; the floats are kept in a float64 device vector refreshed only when they change, so
    a step costs a handful of tiny kernels and no host-to-device copy (none may run inside a
    CUDA graph capture).
    """

    __slots__ = ("_consts", "_floats", "buffer", "step", "values")

    def __init__(self, device: torch.device) -> None:
        self.step = torch.zeros((), dtype=torch.float64, device=device)
        self.buffer = torch.zeros(N_SCALAR_SLOTS, dtype=torch.float32, device=device)
        self.values = torch.zeros(N_SCALAR_SLOTS, dtype=torch.float64, device=device)
        self._consts = torch.zeros(N_SCALAR_FIELDS, dtype=torch.float64, device=device)
        self._floats: tuple[float | None, ...] | None = None

    def write(self, sc: StepScalars) -> None:
        """Store this step's scalars (and the step count) in `buffer`, on the device."""
        values = sc.values()
        floats = tuple(None if torch.is_tensor(v) else float(v) for v in values)
        if floats != self._floats:
            capturing = self.step.is_cuda and torch.cuda.is_current_stream_capturing()
            if capturing:  # fills are kernels; a copy from the host is not allowed here
                for i, v in enumerate(floats):
                    if v is not None:
                        self._consts[i].fill_(v)
            else:
                host = torch.tensor([0.0 if v is None else v for v in floats], dtype=torch.float64)
                self._consts.copy_(host)
            self._floats = floats
        consts = self._consts
        vec = torch.stack(
            [
                consts[i] if f is not None else values[i].to(torch.float64)
                for i, f in enumerate(floats)
            ]
        )
        self.values[:N_SCALAR_FIELDS].copy_(vec)
        self.values[STEP_SLOT].copy_(self.step)
        self.buffer[:N_SCALAR_FIELDS].copy_(vec)
        self.buffer.view(torch.int32)[STEP_SLOT].copy_(self.step)

    def load(self, step: float) -> None:
        """Set the step count (load_state_dict); the buffer is rewritten at the next step."""
        self.step.fill_(float(step))
