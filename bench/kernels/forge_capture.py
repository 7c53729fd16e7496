"""One training step (forward, backward, step) eager and captured in a CUDA graph, FORGE against
torch's fused AdamW, on the claim's stack (8 × Linear(4096, 4096), bf16 autocast, fp32 weights).

    python -m bench.kernels.forge_capture [--tokens 512] [--iters 50]

Prints one JSON object: ms per step of each of four ways (FORGE eager, FORGE captured with
`capturable=True`, fused AdamW eager, fused AdamW captured with `capturable=True`) and FORGE's
speedup against the faster torch way. GPU only. Timing: CUDA events around `iters` steps after
the warm-up, median of 5 rounds; the same static batch every step (shape is what matters).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch
from torch import nn

from kernels.forge import ForgeAdamW, capture
from kernels.runtime.graphs import capture_step


def stack(width: int, depth: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(depth)]).cuda()


def loss_fn(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return model(x).float().square().mean()


def time_ms(step: Callable[[], object], iters: int, rounds: int = 5) -> float:
    """Median over rounds of the mean ms a step, by CUDA events."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    out = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / iters)
    return statistics.median(out)


def eager_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> Callable:
    def step() -> None:
        loss_fn(model, x).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("GPU only")
    x = torch.randn(args.tokens, args.width, device="cuda")
    lr = 1e-4
    out: dict[str, float | int | str] = {
        "tokens": args.tokens,
        "width": args.width,
        "depth": args.depth,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
    ways = {
        "forge_eager": lambda m: eager_step(m, ForgeAdamW(m, lr=lr), x),
        "forge_captured": lambda m: (
            capture(
                m, ForgeAdamW(m, lr=torch.tensor(lr, device="cuda"), capturable=True), loss_fn, (x,)
            ).replay
        ),
        "fused_eager": lambda m: eager_step(
            m, torch.optim.AdamW(m.parameters(), lr=lr, fused=True), x
        ),
        "fused_captured": lambda m: (
            capture_step(
                m,
                torch.optim.AdamW(
                    m.parameters(), lr=torch.tensor(lr, device="cuda"), fused=True, capturable=True
                ),
                loss_fn,
                (x,),
            ).replay
        ),
    }
    for name, make in ways.items():
        model = stack(args.width, args.depth)
        out[f"{name}_ms"] = round(time_ms(make(model), args.iters), 4)
        del model
        torch.cuda.empty_cache()
    best_torch = min(out["fused_eager_ms"], out["fused_captured_ms"])
    for name in ("forge_eager", "forge_captured"):
        out[f"{name}_speedup_vs_best_torch"] = round(best_torch / out[f"{name}_ms"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
