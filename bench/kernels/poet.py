"""POET-X benchmarks: each kernel against its byte or FLOP floor, and the layer against
nn.Linear and naive POET, all in one process with the ceilings measured in the same run.

For each layer shape (in → out at `--tokens` tokens, b = 256, bf16):
- the block rotation plain, with a gather (a coalesced permutation pass into out, then the
  rotation in place), with a scatter (rotation, then the pass in place), the permutation pass
  alone, and the per-block gradient: median ms and fraction of copy_ bandwidth by the bytes
  each must move (read X once, write out once: 2·M·D·2 B; the gradient reads two M×D tensors);
  the plain rotation beside the permuted ones shows what the folded permutation costs;
- the Cayley–Neumann forward and backward over the layer's (in + out)/b blocks, bf16 operands
  (the 16-bit layers' mode) and fp32: TFLOP/s by 2b³ per product (2 forward, 6 backward);
- the layer's forward + backward: nn.Linear, POET-X fast and mem, naive POET, with peak memory,
  and the device time of each kernel of one POET-X fast step (torch.profiler);
- nn.Linear and POET-X fast replayed from CUDA graphs: the GPU's time without the host's
  launch cost (how far the plain timing is host-paced).

    python -m bench.kernels.poet [--tokens 2048] [--out rows.json]
    TRITON_INTERPRET=1 python -m bench.kernels.poet --small --tokens 16 --block 32   # CPU check
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch

from kernels.poet import launch as L
from kernels.poet import reference as ref
from kernels.runtime.ceilings import measure_ceilings
from kernels.runtime.device import describe
from kernels.runtime.timing import kernel_times_us, median_ms

SHAPES = ((4096, 4096), (4096, 14336))


def _skew(nb: int, b: int, norm: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    q = ref.skew_from_vec(torch.randn(nb, ref.n_free(b), generator=gen), b)
    return (q / torch.linalg.matrix_norm(q, ord=2)[:, None, None] * norm).to(device)


def rotation_rows(
    tokens: int, dim: int, block: int, device: torch.device, copy_tbps: float
) -> list[dict[str, Any]]:
    """The rotation kernels on one [tokens, dim] bf16 activation."""
    gen = torch.Generator().manual_seed(1)
    nb = dim // block
    x = torch.randn(tokens, dim, generator=gen).to(device, torch.bfloat16)
    dy = torch.randn(tokens, dim, generator=gen).to(device, torch.bfloat16)
    blocks = ref.cayley_neumann(_skew(nb, block, 0.1, gen, device)).to(torch.bfloat16)
    perm = torch.randperm(dim, generator=gen).to(device, torch.int32)
    out = torch.empty_like(x)
    cases = {
        "rotate_plain": lambda: L.block_rotate_(x, blocks, out=out),
        "rotate_gather": lambda: L.block_rotate_(x, blocks, gather=perm, out=out),
        "rotate_scatter": lambda: L.block_rotate_(x, blocks, scatter=perm, out=out),
        "rotate_transposed_gather": lambda: L.block_rotate_(
            x, blocks.transpose(1, 2), gather=perm, out=out
        ),
        # the permutation pass alone (a copy's bytes: its floor is copy_)
        "permute": lambda: L.permute_cols_(x, perm, out=out),
        "permute_in_place": lambda: L.permute_cols_(out, perm, out=out),
        "grad_plain": lambda: L.block_rotate_grad_(x, dy, nb),
        "grad_gather": lambda: L.block_rotate_grad_(x, dy, nb, gather_dy=perm),
    }
    moved = 2 * tokens * dim * 2  # one M×D bf16 read and one written (or two read)
    flops = 2 * tokens * dim * block
    rows = []
    for name, fn in cases.items():
        fn()
        ms = median_ms(fn, device)
        rows.append(
            {
                "what": name,
                "tokens": tokens,
                "dim": dim,
                "block": block,
                "ms": ms,
                "tbps": moved / (ms * 1e-3) / 1e12,
                "frac_of_copy": moved / (ms * 1e-3) / 1e12 / copy_tbps,
                "tflops": flops / (ms * 1e-3) / 1e12,
            }
        )
    if L.PERMUTE_FALLBACK:  # the Triton permutation was refused: these rows are torch's
        rows.append({"what": "permute_fallback", "dim": dim, **L.PERMUTE_FALLBACK})
    return rows


def cayley_rows(n_in: int, n_out: int, block: int, device: torch.device) -> list[dict[str, Any]]:
    """The polynomial's forward and backward over one layer's blocks."""
    gen = torch.Generator().manual_seed(2)
    nb = (n_in + n_out) // block
    q = _skew(nb, block, 0.1, gen, device).float().contiguous()
    g = torch.randn(nb, block, block, generator=gen).to(device)
    rows = []
    for precision in ("bf16", "ieee"):
        _, q2 = L.cayley_neumann_fwd(q, precision=precision)
        for name, fn, products in (
            ("cayley_fwd", lambda p=precision: L.cayley_neumann_fwd(q, precision=p), 2),
            (
                "cayley_bwd",
                lambda p=precision, q2=q2: L.cayley_neumann_bwd(q, q2, g, precision=p),
                6,
            ),
        ):
            fn()
            ms = median_ms(fn, device)
            flops = products * 2 * block**3 * nb
            rows.append(
                {
                    "what": f"{name}_{precision}",
                    "blocks": nb,
                    "block": block,
                    "ms": ms,
                    "tflops": flops / (ms * 1e-3) / 1e12,
                }
            )
    return rows


def layer_rows(
    n_in: int, n_out: int, tokens: int, block: int, device: torch.device
) -> list[dict[str, Any]]:
    """nn.Linear, POET-X fast/mem and naive POET forward + backward, with peak memory."""
    from replication.claims.poet.measure import PROFILE, _peak_gb, speed

    p = PROFILE["full"]
    p = type(p)(**{**p.__dict__, "speed_tokens": tokens, "speed_block": block})
    ms, fns = speed(p, n_in, n_out, device)
    rows = []
    for name, t in ms.items():
        row: dict[str, Any] = {
            "what": f"layer_{name}",
            "in": n_in,
            "out": n_out,
            "tokens": tokens,
            "ms": t,
            "over_linear": t / ms["linear"],
        }
        if device.type == "cuda":
            row["peak_gb"] = _peak_gb(fns[name], device)
        rows.append(row)
    if device.type == "cuda":
        rows.append(
            {
                "what": "poetx_fast_kernels_us",
                "in": n_in,
                "out": n_out,
                "per_kernel": kernel_times_us(fns["poetx_fast"], device),
            }
        )
    return rows


def graphed_rows(
    n_in: int, n_out: int, tokens: int, block: int, device: torch.device
) -> list[dict[str, Any]]:
    """Forward + backward replayed from CUDA graphs (torch.cuda.make_graphed_callables): the
    GPU's time with the host's launch cost removed, for nn.Linear and POET-X fast. Where the
    plain timing is far above this one, the layer is paced by the host. A failure is reported
    in the row, never raised (a diagnostic)."""
    from torch import nn

    from kernels.poet import POETLinear

    gen = torch.Generator().manual_seed(14)
    dtype = torch.bfloat16
    w0 = (torch.randn(n_out, n_in, generator=gen) / math.sqrt(n_in)).to(device, dtype)
    x = torch.randn(tokens, n_in, generator=gen).to(device, dtype).requires_grad_(True)
    dy = torch.randn(tokens, n_out, generator=gen).to(device, dtype)
    lin = nn.Linear(n_in, n_out, bias=False, device=device, dtype=dtype)
    with torch.no_grad():
        lin.weight.copy_(w0)
    layer = POETLinear(n_in, n_out, block, weight=w0, mode="fast", generator=gen)
    with torch.no_grad():
        layer.theta.normal_(0.0, 1e-3)
    rows = []
    times: dict[str, float] = {}
    for name, module in (("linear", lin), ("poetx_fast", layer)):
        row: dict[str, Any] = {"what": f"graphed_{name}", "in": n_in, "out": n_out}
        try:
            module(x).backward(dy)  # compile and tune before capture
            graphed = torch.cuda.make_graphed_callables(module, (x,))

            def step(graphed: Any = graphed, module: nn.Module = module) -> None:
                x.grad = None
                for q in module.parameters():
                    q.grad = None
                graphed(x).backward(dy)

            times[name] = row["ms"] = median_ms(step, device)
        except Exception as exc:
            row["error"] = repr(exc)[:300]
        rows.append(row)
    if len(times) == 2:
        rows.append(
            {
                "what": "graphed_poetx_fast_over_linear",
                "in": n_in,
                "out": n_out,
                "ratio": times["poetx_fast"] / times["linear"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--out", type=str, default=None)
    ap.add_argument(
        "--small", action="store_true", help="toy sizes (a CPU check of the code, interpreter)"
    )
    args = ap.parse_args()
    shapes = ((32, 64),) if args.small else SHAPES
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.small:
        raise SystemExit("bench.kernels.poet needs a CUDA device (or --small)")
    ceilings = measure_ceilings(device)
    env = {**describe(device), "torch": torch.__version__}
    rows: list[dict[str, Any]] = [{"what": "ceilings", **ceilings.figures(), **env}]
    for dim in sorted({d for shape in shapes for d in shape}):
        rows += rotation_rows(args.tokens, dim, args.block, device, ceilings.copy_tbps)
    for n_in, n_out in shapes:
        rows += cayley_rows(n_in, n_out, args.block, device)
        rows += layer_rows(n_in, n_out, args.tokens, args.block, device)
    if device.type == "cuda":  # last: a failed capture must not spoil the rows above
        for n_in, n_out in shapes:
            rows += graphed_rows(n_in, n_out, args.tokens, args.block, device)
    for row in rows:
        cells = [
            f"{k}={v:.4g}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}"
            for k, v in row.items()
        ]
        print("  ".join(cells), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
