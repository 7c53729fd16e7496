"""Test support shared by every paper: seeds, poisoned and guarded buffers, errors, the
low-precision tolerance rule of ``shared/KERNELS.md`` and the interpreter canary.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

import torch
import triton
import triton.language as tl

GUARD = 256  # sentinel elements on each side of a guarded tensor
# atol of the low-precision rule, by dtype (flash-attention's choices)
LOWP_ATOL = {torch.bfloat16: 5e-2, torch.float16: 1e-2, torch.float32: 1e-4}


def seed_for(name: str) -> int:
    """A per-test seed: stable for a name, shifted by $PITH_TEST_SEED to draw other inputs."""
    return (zlib.crc32(name.encode()) + int(os.environ.get("PITH_TEST_SEED", "0"))) % (2**31)


def generator(name: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded by `seed_for(name)`."""
    return torch.Generator(device=device).manual_seed(seed_for(name))


def poisoned(
    shape: tuple[int, ...], dtype: torch.dtype, device: str | torch.device
) -> torch.Tensor:
    """An output buffer filled with NaN (or -12345 for integers): an element a kernel forgets to
    write shows up in the comparison."""
    if dtype.is_floating_point:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.full(shape, -12345, dtype=dtype, device=device)


def guarded(values: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None]]:
    """A contiguous copy of `values` living inside a buffer whose margins hold sentinels.

    In-place kernels' outputs cannot be poisoned before the call; instead the returned
    `check()` asserts that nothing was written outside the tensor.
    """
    n = values.numel()
    buf = poisoned((n + 2 * GUARD,), values.dtype, values.device)
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


def lowp_error_bound(
    torch_lowp: torch.Tensor, ref32: torch.Tensor, atol: float | None = None
) -> float:
    """The rule's bound: 2·max|torch_lowp − ref32| + atol (atol by torch_lowp's dtype)."""
    if atol is None:
        atol = LOWP_ATOL[torch_lowp.dtype]
    return 2 * float((torch_lowp.double() - ref32.double()).abs().max()) + atol


def assert_close_lowp(
    kern: torch.Tensor, ref32: torch.Tensor, torch_lowp: torch.Tensor, atol: float | None = None
) -> None:
    """KERNELS.md's low-precision rule: max|kern − ref32| ≤ 2·max|torch_lowp − ref32| + atol,
    where torch_lowp is plain PyTorch computing the same thing in the kernel's precision."""
    bound = lowp_error_bound(torch_lowp, ref32, atol)
    err = float((kern.double() - ref32.double()).abs().max())
    if not err <= bound:  # also fails on NaN
        raise AssertionError(f"max|kern - ref32| = {err:.3g} > bound {bound:.3g}")


# --- the interpreter canary: the quirks kernels work around, asserted so an upgrade is noticed


@triton.jit
def _canary_dot_kernel(a_ptr, b_ptr, out_ptr):
    r = tl.arange(0, 16)
    a = tl.load(a_ptr + r[:, None] * 16 + r[None, :])
    b = tl.load(b_ptr + r[:, None] * 16 + r[None, :])
    tl.store(out_ptr + r[:, None] * 16 + r[None, :], tl.dot(a, b))


@triton.jit
def _canary_u32_kernel(x_ptr, out_ptr):
    r = tl.arange(0, 16)
    x = tl.load(x_ptr + r).to(tl.uint32)
    tl.store(out_ptr + r, ((x * 0x846CA68B) >> 16).to(tl.int32))


def interpreter_quirks(device: str | torch.device = "cpu") -> dict[str, bool]:
    """What Triton does on `device` for the known interpreter quirks:

    - ``bf16_dot_wrong``: ``tl.dot`` on bf16 tiles does not give the fp32 product (interpreter:
      True, so kernels upcast before the dot there);
    - ``uint32_products_wrap``: uint32 products wrap modulo 2**32 (must stay True everywhere:
      stochastic-rounding hashes rely on it).
    """
    g = torch.Generator().manual_seed(seed_for("canary"))
    a = torch.randn(16, 16, generator=g).bfloat16().to(device)
    b = torch.randn(16, 16, generator=g).bfloat16().to(device)
    out = poisoned((16, 16), torch.float32, device)
    _canary_dot_kernel[(1,)](a, b, out)
    want = a.float() @ b.float()
    dot_wrong = not torch.allclose(out, want, rtol=1e-2, atol=1e-2)
    x = torch.arange(2**31 - 16, 2**31, dtype=torch.int64).to(torch.int32).to(device)
    out32 = poisoned((16,), torch.int32, device)
    _canary_u32_kernel[(1,)](x, out32)
    expect = (((x.to(torch.int64) & 0xFFFFFFFF) * 0x846CA68B) & 0xFFFFFFFF) >> 16
    wraps = torch.equal(out32.to(torch.int64), expect)
    return {"bf16_dot_wrong": dot_wrong, "uint32_products_wrap": wraps}
