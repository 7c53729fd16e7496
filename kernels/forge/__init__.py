"""FORGE (arXiv 2606.22932): the optimizer step folded into the weight-gradient GEMM.

Each tile of dW = dYᵀ·X is consumed by the update rule in registers the moment it is produced,
so the weight gradient never exists as a tensor. `ForgeAdamW(model, ...)` is the drop-in
optimizer; `forge_linear_step_` the host launcher of the fused kernel; `reference` the
plain-PyTorch oracle; `capture` the whole step as one CUDA graph (`capturable=True`); `ops` the
`torch.library` ops that let `torch.compile` train FORGE-managed layers.
"""

from .capture import capture
from .launch import ForgeLinearFunction, forge_linear, forge_linear_step_, round_to_bf16_triton
from .optim import ForgeAdamW, ForgeLion, ForgeOptimizer, ForgeSGD
from .rules import Rule, StepScalars

__all__ = [
    "ForgeAdamW",
    "ForgeLinearFunction",
    "ForgeLion",
    "ForgeOptimizer",
    "ForgeSGD",
    "Rule",
    "StepScalars",
    "capture",
    "forge_linear",
    "forge_linear_step_",
    "round_to_bf16_triton",
]
