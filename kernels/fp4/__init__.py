"""FP4 training (arXiv 2501.17116): E2M1 quantizers, the differentiable gradient estimator,
outlier clamping with compensation, an FP4 linear layer through FP8 GEMMs, and patch(model)."""

from kernels.fp4.launch import (
    FP4_DIRECT,
    FP4_FULL,
    FP4Config,
    FP4Tensor,
    dequantize,
    dge_derivative,
    dge_weight_grad,
    fake_quantize,
    fp4_linear,
    outlier_clamp,
    quantile_bounds,
    quantize,
)
from kernels.fp4.modules import FP4Linear, patch, unpatch

__all__ = [
    "FP4_DIRECT",
    "FP4_FULL",
    "FP4Config",
    "FP4Linear",
    "FP4Tensor",
    "dequantize",
    "dge_derivative",
    "dge_weight_grad",
    "fake_quantize",
    "fp4_linear",
    "outlier_clamp",
    "patch",
    "quantile_bounds",
    "quantize",
    "unpatch",
]
