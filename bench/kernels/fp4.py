"""Benchmark of the FP4 kernels against the ceilings measured in the same run.

Per shape (bf16 activations, token-wise scales): the quantizer's three outputs (dequantized bf16,
e4m3 codes, packed nibbles) and the fused clamp + residual form, in ms, TB/s and fraction of
``copy_``, beside the eager PyTorch transcription; the DGE derivative alone; the dW GEMM with the
DGE in its epilogue against cuBLAS dW + a separate DGE pass; the FP4 layer (forward + backward)
against bf16 F.linear; and the e4m3 GEMM against bf16's.

    python -m bench.kernels.fp4 [--out FILE.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from kernels.runtime import timing
from kernels.runtime.ceilings import measure_ceilings
from kernels.runtime.device import default_device, describe, use_interpreter_without_gpu

QUANT_SHAPES = ((8192, 4096), (16384, 1376), (4096, 14336))
LAYER_SHAPES = ((8192, 4096, 4096), (8192, 512, 1376))
QUICK_QUANT = ((64, 256),)
QUICK_LAYER = ((64, 64, 48),)


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def bench_quantizer(shape: tuple[int, int], device: torch.device, ceil: Any) -> list[dict]:
    """The quantizer's forms on one (tokens, features) bf16 tensor."""
    from kernels.fp4 import dge_derivative
    from kernels.fp4 import reference as R
    from kernels.fp4.launch import quantile_bounds, quantize_rows

    m, k = shape
    n = m * k
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1)).bfloat16().to(device)
    lo, hi = quantile_bounds(x, 0.99)
    cases: dict[str, tuple[Callable[[], Any], float]] = {
        "quant_dequant_bf16": (lambda: quantize_rows(x, out="dequant"), 4 * n + 4 * m),
        "quant_e4m3": (lambda: quantize_rows(x, out="e4m3"), 3 * n + 4 * m),
        "quant_packed": (lambda: quantize_rows(x, out="packed"), 2.5 * n + 4 * m),
        "quant_clamp_residual_e4m3": (
            lambda: quantize_rows(x, out="e4m3", lo=lo, hi=hi, residual=True),
            5 * n + 12 * m,
        ),
        "dge_derivative_bf16": (lambda: dge_derivative(x), 4 * n),
        "eager_reference_dequant": (lambda: R.fake_quantize_ref(x), 4 * n + 4 * m),
        "quantile_bounds_topk": (lambda: quantile_bounds(x, 0.99), 2 * n),
    }
    rows = []
    for name, (fn, nbytes) in cases.items():
        ms = timing.median_ms(fn, device)
        rows.append(
            {
                "op": name,
                "shape": f"{m}x{k}",
                "ms": ms,
                "tbps": nbytes / (ms * 1e-3) / 1e12,
                "frac_of_copy": ceil.frac_of_copy(nbytes, ms),
                "bytes_per_element": nbytes / n,
            }
        )
    return rows


def bench_layer(shape: tuple[int, int, int], device: torch.device, ceil: Any) -> list[dict]:
    """dW with the DGE fused vs unfused, and the FP4 layer vs bf16 F.linear (fwd + bwd)."""
    from kernels.fp4 import FP4_DIRECT, FP4_FULL, dge_derivative, dge_weight_grad, fp4_linear

    m, k, nn = shape
    dt = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(2)
    x = torch.randn(m, k, generator=g).to(device=device, dtype=dt)
    w = (torch.randn(nn, k, generator=g) * k**-0.5).to(device=device, dtype=dt)
    dy = torch.randn(m, nn, generator=g).to(device=device, dtype=dt)
    sf = torch.exp2(torch.randint(0, 4, (k,), generator=g).float()).to(device)
    flops = 2 * m * k * nn
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()

    def layer(cfg):
        return lambda: torch.autograd.grad(fp4_linear(xg, wg, None, cfg), (xg, wg), dy)

    cases: dict[str, tuple[Callable[[], Any], float]] = {
        "dw_dge_fused": (lambda: dge_weight_grad(dy, x, w, sf), flops),
        "dw_dge_unfused": (
            lambda: (dy.t() @ x) * dge_derivative(w * sf.to(dt)[None, :]),
            flops,
        ),
        "dw_cublas_only": (lambda: dy.t() @ x, flops),
        "layer_fp4_full_fwd_bwd": (layer(FP4_FULL), 3 * flops),
        "layer_fp4_direct_fwd_bwd": (layer(FP4_DIRECT), 3 * flops),
        "layer_bf16_fwd_bwd": (
            lambda: torch.autograd.grad(F.linear(xg, wg), (xg, wg), dy),
            3 * flops,
        ),
    }
    rows = []
    for name, (fn, fl) in cases.items():
        ms = timing.median_ms(fn, device)
        rows.append(
            {
                "op": name,
                "shape": f"{m}x{k}x{nn}",
                "ms": ms,
                "tflops": fl / (ms * 1e-3) / 1e12,
                "frac_of_gemm": ceil.frac_of_gemm(fl, ms),
            }
        )
    return rows


def bench_fp8_gemm(n: int, device: torch.device, ceil: Any) -> list[dict]:
    """e4m3 × e4m3 with row-wise scales (bf16 out) against bf16 torch.mm, n³."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    sa, sb = torch.ones(n, 1, device=device), torch.ones(1, n, device=device)
    ab, bb = a.bfloat16(), b.bfloat16()

    def fp8() -> torch.Tensor:
        return torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)

    rows = []
    for name, fn in (("gemm_fp8_rowwise", fp8), ("gemm_bf16", lambda: torch.mm(ab, bb))):
        ms = timing.median_ms(fn, device)
        rows.append(
            {
                "op": name,
                "shape": f"{n}^3",
                "ms": ms,
                "tflops": 2 * n**3 / (ms * 1e-3) / 1e12,
                "frac_of_gemm": ceil.frac_of_gemm(2 * n**3, ms),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--quick", action="store_true", help="toy shapes (CPU / interpreter)")
    args = ap.parse_args(argv)
    use_interpreter_without_gpu()
    device = default_device()
    quick = args.quick or device.type != "cuda"
    ceil = measure_ceilings(device)
    tags = {**describe(device), "torch": torch.__version__, "commit": _commit()}
    import triton

    tags["triton"] = triton.__version__
    rows: list[dict] = []
    for shape in QUICK_QUANT if quick else QUANT_SHAPES:
        rows += bench_quantizer(shape, device, ceil)
    for shape in QUICK_LAYER if quick else LAYER_SHAPES:
        rows += bench_layer(shape, device, ceil)
    rows += bench_fp8_gemm(64 if quick else 8192, device, ceil)
    result = {"tags": tags, "ceilings": ceil.figures(""), "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(f"copy_ {ceil.copy_tbps:.2f} TB/s, bf16 GEMM {ceil.gemm_bf16_tflops:.0f} TFLOP/s, {tags}")
    print(f"{'op':32} {'shape':18} {'ms':>9} {'TB/s|TFLOP/s':>13} {'of ceiling':>10}")
    for r in rows:
        rate = r.get("tbps", r.get("tflops", 0.0))
        frac = r.get("frac_of_copy", r.get("frac_of_gemm", 0.0))
        print(f"{r['op']:32} {r['shape']:18} {r['ms']:9.4f} {rate:13.3f} {frac:10.3f}")


if __name__ == "__main__":
    main()
