"""One process's measurement of the T=512 speed comparison, printed as one JSON line.

The claim runs this in separate processes (`spawn`) besides its own measurement: a speedup that
held in one process and not in the next (tuning choices, host jitter, allocator layout) shows as
a spread across processes instead of deciding a verdict by chance. Only what the comparison
needs is built (the arms' stacks, drawn on the device); nothing is judged here.

    python -m replication.claims.forge.speed --tokens 512 [--width 4096 --depth 8 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kernels.runtime.device import use_interpreter_without_gpu

REPO = Path(__file__).resolve().parents[3]
MODULE = "replication.claims.forge.speed"


def spawn(
    *,
    tokens: int,
    width: int,
    depth: int,
    iters: int,
    warmup: int,
    arms: tuple[str, ...],
    timeout_s: float,
) -> dict[str, Any]:
    """Run one measuring process to its end (same interpreter, the repo importable) and return
    its JSON. A process that fails, times out or prints no JSON is a RuntimeError with its
    stderr's tail."""
    cmd = [
        sys.executable,
        "-m",
        MODULE,
        "--tokens",
        str(tokens),
        "--width",
        str(width),
        "--depth",
        str(depth),
        "--iters",
        str(iters),
        "--warmup",
        str(warmup),
        "--arms",
        *arms,
    ]
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), path) if p))
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"speed process timed out after {timeout_s:.0f} s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"speed process exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    from .workload import ARMS

    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    args = ap.parse_args(argv)
    import torch

    from .workload import speed_run

    device = "cuda" if torch.cuda.is_available() else "cpu"
    run = speed_run(
        args.tokens,
        args.width,
        args.depth,
        args.arms,
        iters=args.iters,
        warmup=args.warmup,
        device=device,
    )
    print(json.dumps({"pid": os.getpid(), "device": device, **run.as_json()}), flush=True)


if __name__ == "__main__":
    use_interpreter_without_gpu()  # before anything imports triton
    main()
