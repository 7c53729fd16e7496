"""Ceilings measured in the run that judges against them: ``copy_`` bandwidth and a bf16 GEMM's
rate on the same device. Fractions of bandwidth or FLOP rate are taken against these, never
against a datasheet constant (an H100 copies at ~3.0 TB/s, an H200 at ~4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .device import describe
from .timing import median_ms


@dataclass(frozen=True)
class Ceilings:
    """What this device does in practice: bytes moved by copy_ and bf16 GEMM FLOPs per second."""

    copy_tbps: float
    gemm_bf16_tflops: float
    copy_bytes: int
    gemm_n: int
    device: str

    def frac_of_copy(self, nbytes: float, ms: float) -> float:
        """Fraction of the copy ceiling reached by moving `nbytes` in `ms`."""
        return nbytes / (ms * 1e-3) / 1e12 / self.copy_tbps

    def frac_of_gemm(self, flops: float, ms: float) -> float:
        """Fraction of the bf16 GEMM ceiling reached by `flops` in `ms`."""
        return flops / (ms * 1e-3) / 1e12 / self.gemm_bf16_tflops

    def figures(self, prefix: str = "ceiling_") -> dict[str, float | int | str]:
        """The ceilings as claim figures (the device's name goes to the environment)."""
        return {
            f"{prefix}copy_tbps": self.copy_tbps,
            f"{prefix}gemm_bf16_tflops": self.gemm_bf16_tflops,
            f"{prefix}copy_bytes": self.copy_bytes,
            f"{prefix}gemm_n": self.gemm_n,
        }


def copy_tbps(device: torch.device, numel: int) -> float:
    """fp32 ``copy_`` of `numel` elements: TB/s counting the read and the write."""
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device)
    return 2 * 4 * numel / (ms * 1e-3) / 1e12


def gemm_bf16_tflops(device: torch.device, n: int) -> float:
    """A bf16 n×n×n ``torch.mm`` (cuBLAS on CUDA): TFLOP/s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # CPU bf16 mm is a toy
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    ms = median_ms(lambda: torch.mm(a, b), device)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure_ceilings(
    device: torch.device | None = None, *, copy_numel: int | None = None, gemm_n: int | None = None
) -> Ceilings:
    """Both ceilings on `device` (default: CUDA when present). Defaults: 2^28 fp32 elements
    (1 GiB each way, far beyond L2) and n=8192 on CUDA; small sizes on the CPU."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    numel = copy_numel or (1 << 28 if cuda else 1 << 22)
    n = gemm_n or (8192 if cuda else 256)
    return Ceilings(
        copy_tbps=copy_tbps(device, numel),
        gemm_bf16_tflops=gemm_bf16_tflops(device, n),
        copy_bytes=2 * 4 * numel,
        gemm_n=n,
        device=describe(device)["device"],
    )
