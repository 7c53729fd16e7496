"""Helpers shared by the FORGE tests and the claim: guarded buffers, errors, seeds."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

import torch

GUARD = 256  # sentinel elements on each side of a guarded tensor


def seed_for(name: str) -> int:
    """A per-test seed: stable for a name, shifted by $PITH_TEST_SEED to draw other inputs."""
    return (zlib.crc32(name.encode()) + int(os.environ.get("PITH_TEST_SEED", "0"))) % (2**31)


def guarded(values: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None]]:
    """A contiguous copy of `values` living inside a buffer whose margins hold sentinels.

    The kernels update in place, so their outputs cannot be poisoned before the call; instead
    the returned `check()` asserts that nothing was written outside the tensor.
    """
    n = values.numel()
    if values.dtype.is_floating_point:
        buf = torch.full((n + 2 * GUARD,), float("nan"), dtype=values.dtype, device=values.device)
    else:
        buf = torch.full((n + 2 * GUARD,), -12345, dtype=values.dtype, device=values.device)
    view = buf[GUARD : GUARD + n].view(values.shape)
    view.copy_(values)
    sentinel = buf[:GUARD].clone()

    def check() -> None:
        for side in (buf[:GUARD], buf[GUARD + n :]):
            same = side.view(torch.int16 if side.element_size() == 2 else torch.int32)
            ref = sentinel.view(same.dtype)
            if not torch.equal(same, ref):
                raise AssertionError("a kernel wrote outside its tensor (guard overwritten)")

    return view, check


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-wise relative error ‖a − b‖ / ‖b‖ in float64."""
    a64, b64 = a.detach().double(), b.detach().double()
    den = b64.norm().item()
    return (a64 - b64).norm().item() / (den if den > 0 else 1.0)


def bf16_ulps_apart(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a − b| in bf16 ulps (same-sign values; bit patterns read as ordered integers)."""
    ia = a.view(torch.int16).to(torch.int32)
    ib = b.view(torch.int16).to(torch.int32)
    return (ia - ib).abs()
