"""SAGE (arXiv 2604.07663) and SinkGD: fused Triton optimizer kernels, optimizers, references."""

from kernels.sage.optim import (
    SAGE,
    Lion,
    LionHybrid,
    SAGEHybrid,
    SinkGD,
    SinkGDHybrid,
    optimizer_state_bytes,
    route_parameters,
)

__all__ = [
    "SAGE",
    "Lion",
    "LionHybrid",
    "SAGEHybrid",
    "SinkGD",
    "SinkGDHybrid",
    "optimizer_state_bytes",
    "route_parameters",
]
