"""ChunkFT benchmarks: the slice kernels against cuBLAS and their floors, with the ceilings
measured in the same run.

For the 7B shapes at `--tokens` tokens (bf16 operands, fp32 accumulation), an active slice of
1/`--fraction` of the weight, both strategies:
- `sliced_dw` (slice gradient, fp32 out) against cuBLAS on the same strided slice
  (``dy[:, s:e].T @ x`` in bf16, then cast to fp32) and against cuBLAS forming the whole dW;
  TFLOP/s by 2·T·rows·cols, fraction of the bf16 GEMM ceiling;
- the fused slice GEMM + AdamW (`sliced_dw_adamw_`) against `sliced_dw` + `adamw_slice_`;
- `adamw_slice_` alone (bf16 weights, fp32 states): GB/s by 20 B an element, fraction of copy_;
- `embedding_dw` on a 32000-row vocab slice against index_add_ of the masked rows.

    python -m bench.kernels.chunkft [--tokens 1024] [--fraction 8] [--out rows.json]
    TRITON_INTERPRET=1 python -m bench.kernels.chunkft --small   # CPU check of the code path
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from kernels.chunkft import adamw_slice_, embedding_dw, sliced_dw, sliced_dw_adamw_
from kernels.chunkft import reference as ref
from kernels.forge.rules import StepScalars
from kernels.runtime.ceilings import measure_ceilings
from kernels.runtime.device import describe, interpreting
from kernels.runtime.timing import median_ms

SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008), (32000, 4096))  # (N out, K in)
SC = StepScalars.adamw(step=10, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def slice_rows(
    tokens: int, n: int, k: int, fraction: int, device: torch.device, ceil: Any
) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(n * 7 + k)
    dy = torch.randn(tokens, n, generator=gen).to(device, torch.bfloat16)
    x = torch.randn(tokens, k, generator=gen).to(device, torch.bfloat16)
    w = torch.randn(n, k, generator=gen).to(device, torch.bfloat16)
    return [
        _strategy_row(dy, x, w, strategy, fraction, device, ceil) for strategy in ("column", "row")
    ]


def _strategy_row(dy, x, w, strategy: str, fraction: int, device, ceil) -> dict[str, Any]:
    tokens, n = dy.shape
    k = x.shape[1]
    width = n if strategy == "column" else k
    s = width // 3
    e = s + max(width // fraction, 1)
    shape = (e - s, k) if strategy == "column" else (n, e - s)
    out = torch.empty(shape, dtype=torch.float32, device=device)
    m = torch.zeros(shape, device=device)
    v = torch.zeros(shape, device=device)
    a, b = (dy[:, s:e], x) if strategy == "column" else (dy, x[:, s:e])
    wv = w[s:e] if strategy == "column" else w[:, s:e]
    cases = {
        "sliced_dw": lambda: sliced_dw(dy, x, s, e, strategy, out=out),
        "cublas_slice": lambda: torch.mm(a.t(), b).float(),
        "cublas_full_dw": lambda: torch.mm(dy.t(), x),
        "fused_adamw": lambda: sliced_dw_adamw_(dy, x, w, s, e, m, v, SC, strategy),
        "unfused_adamw": lambda: adamw_slice_(
            wv, sliced_dw(dy, x, s, e, strategy, out=out), m, v, SC
        ),
        "adamw_slice": lambda: adamw_slice_(wv, out, m, v, SC),
    }
    flops = 2 * tokens * shape[0] * shape[1]
    ms = {name: median_ms(fn, device) for name, fn in cases.items()}
    return {
        "what": f"slice_{strategy}",
        "tokens": tokens,
        "N": n,
        "K": k,
        "slice": [s, e],
        **{f"{name}_ms": t for name, t in ms.items()},
        "sliced_dw_tflops": flops / (ms["sliced_dw"] * 1e-3) / 1e12,
        "sliced_dw_frac_of_gemm": ceil.frac_of_gemm(flops, ms["sliced_dw"]),
        "sliced_dw_over_cublas_slice": ms["sliced_dw"] / ms["cublas_slice"],
        "sliced_dw_over_cublas_full": ms["sliced_dw"] / ms["cublas_full_dw"],
        "fused_over_unfused": ms["fused_adamw"] / ms["unfused_adamw"],
        "adamw_slice_frac_of_copy": ceil.frac_of_copy(20 * shape[0] * shape[1], ms["adamw_slice"]),
    }


def embedding_row(tokens: int, vocab: int, dim: int, fraction: int, device: torch.device):
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, vocab, (tokens,), generator=gen).to(device)
    dy = torch.randn(tokens, dim, generator=gen).to(device, torch.bfloat16)
    s = vocab // 3
    e = s + vocab // fraction
    out = torch.empty(e - s, dim, dtype=torch.float32, device=device)
    ms_k = median_ms(lambda: embedding_dw(ids, dy, s, e, out=out), device)
    ms_r = median_ms(lambda: ref.embedding_dw_reference(ids, dy, s, e), device)
    return {
        "what": "embedding_dw",
        "tokens": tokens,
        "vocab_slice": [s, e],
        "dim": dim,
        "kernel_ms": ms_k,
        "index_add_ms": ms_r,
        "kernel_over_index_add": ms_k / ms_r,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--fraction", type=int, default=8)
    ap.add_argument("--small", action="store_true", help="toy shapes (CPU / interpreter)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not interpreting() else "cpu")
    shapes = ((96, 80),) if args.small else SHAPES
    tokens = 32 if args.small else args.tokens
    ceil = measure_ceilings(device)
    rows: list[dict[str, Any]] = [
        {"what": "ceilings", **ceil.figures(), **describe(device), "torch": torch.__version__}
    ]
    for n, k in shapes:
        rows.extend(slice_rows(tokens, n, k, args.fraction, device, ceil))
    vocab, dim = (200, 64) if args.small else (32000, 4096)
    rows.append(embedding_row(tokens, vocab, dim, args.fraction, device))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    print(
        f"{'what':14} {'N':>6} {'K':>6} {'dw ms':>8} {'cuBLAS sl':>9} {'cuBLAS full':>11} "
        f"{'frac gemm':>9} {'fused/unf':>9} {'adamw copy':>10}"
    )
    for r in rows:
        if r["what"].startswith("slice_"):
            print(
                f"{r['what']:14} {r['N']:>6} {r['K']:>6} {r['sliced_dw_ms']:8.3f} "
                f"{r['cublas_slice_ms']:9.3f} {r['cublas_full_dw_ms']:11.3f} "
                f"{r['sliced_dw_frac_of_gemm']:9.2f} {r['fused_over_unfused']:9.2f} "
                f"{r['adamw_slice_frac_of_copy']:10.2f}"
            )
        elif r["what"] == "embedding_dw":
            print(
                f"embedding_dw rows {r['vocab_slice']} x {r['dim']}: {r['kernel_ms']:.3f} ms, "
                f"index_add_ {r['index_add_ms']:.3f} ms"
            )
        else:
            print(r)


if __name__ == "__main__":
    main()
