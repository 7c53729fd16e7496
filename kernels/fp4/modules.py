"""The drop-in: ``patch(model)`` turns a model's linear layers into FP4 layers, ``unpatch`` back.

A patched layer is the same ``nn.Linear`` object with its class swapped for ``FP4Linear``: the
parameters, their optimizer state, hooks, ``state_dict`` keys and device stay as they were, so
patching before or after building the optimizer, or in the middle of training, is safe.
Embeddings are not linear layers and are never touched; ``lm_head`` (and any name in ``skip``)
keeps full precision, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.fp4.launch import FP4_FULL, FP4Config, fp4_linear


class FP4Linear(nn.Linear):
    """nn.Linear whose forward runs through FP4 (see launch.FP4LinearFunction).

    Under autocast the input, weight and bias are cast to the autocast dtype first (the weight's
    gradient flows back to the full-precision parameter through that cast).
    """

    fp4_config: FP4Config = FP4_FULL
    fp4_use_kernels: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        with torch.autocast(dev, enabled=False):
            bias = None if self.bias is None else self.bias.to(dt)
            return fp4_linear(
                x.to(dt), self.weight.to(dt), bias, self.fp4_config,
                use_kernels=self.fp4_use_kernels,
            )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp4={self.fp4_config}"


def patch(
    model: nn.Module,
    config: FP4Config = FP4_FULL,
    *,
    skip: tuple[str, ...] = ("lm_head",),
    use_kernels: bool | None = None,
) -> list[str]:
    """Turn every plain nn.Linear of `model` whose name's last part is not in `skip` into an
    FP4Linear with `config` (an already patched layer takes the new config); returns the names."""
    names = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in skip:
            continue
        if type(module) is nn.Linear or type(module) is FP4Linear:
            module.__class__ = FP4Linear
            module.fp4_config = config
            module.fp4_use_kernels = use_kernels
            names.append(name)
    if not names:
        raise ValueError("the model has no nn.Linear layer to patch")
    return names


def unpatch(model: nn.Module) -> list[str]:
    """Turn every FP4Linear of `model` back into a plain nn.Linear; returns the names."""
    names = []
    for name, module in model.named_modules():
        if type(module) is FP4Linear:
            module.__class__ = nn.Linear
            for attr in ("fp4_config", "fp4_use_kernels"):
                module.__dict__.pop(attr, None)
            names.append(name)
    return names
