"""Throughput and memory per GPU of the sharded paths, on 1 or N GPUs (run under torchrun).

    torchrun --standalone --nproc-per-node N -m bench.kernels.distributed --out FILE.json

Three workloads on a stack of MLP blocks (d → 4d → d, fp32 weights, bf16 autocast):
`forge_tp` (ForgeAdamW, the blocks column/row-parallel over the N GPUs, every rank on the same
tokens), `sage_fsdp` (SAGEHybrid on FSDP2 shards, each rank its own tokens) and `chunkft_dp`
(DistributedChunkFT, each rank its own tokens). With N = 1 the same code runs unsharded (no
process group collectives but the trivial ones), so tokens/s on N GPUs ÷ 1 GPU is the scaling.
Rank 0 writes one row a workload: median step ms, tokens/s, peak memory of each GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def _blocks(d: int, layers: int, device: torch.device) -> nn.Sequential:
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)]
    return nn.Sequential(*mods).to(device)


def _tp_plan(layers: int) -> dict[str, Any]:
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan: dict[str, Any] = {}
    for i in range(layers):
        plan[str(3 * i)] = ColwiseParallel()
        plan[str(3 * i + 2)] = RowwiseParallel()
    return plan


def _build(kind: str, d: int, layers: int, device: torch.device, mesh: Any) -> tuple:
    model = _blocks(d, layers, device)
    world = mesh.size()
    if kind == "forge_tp":
        from torch.distributed.tensor.parallel import parallelize_module

        from kernels.forge import ForgeAdamW

        if world > 1:
            parallelize_module(model, mesh, _tp_plan(layers))
        return model, ForgeAdamW(model, lr=1e-4)
    if kind == "sage_fsdp":
        from torch.distributed.fsdp import fully_shard

        from kernels.sage import SAGEHybrid
        from kernels.sage.parallel import shard_aware

        if world > 1:
            for i in range(0, len(model), 3):
                fully_shard(model[i], mesh=mesh)
                fully_shard(model[i + 2], mesh=mesh)
            fully_shard(model, mesh=mesh)
            return model, shard_aware(SAGEHybrid(model, lr=1e-4))
        return model, SAGEHybrid(model, lr=1e-4)
    if kind == "chunkft_dp":
        from kernels.chunkft import ChunkFT
        from kernels.chunkft.parallel import DistributedChunkFT

        cls = DistributedChunkFT if world > 1 else ChunkFT
        return model, cls(model, chunks=4, lr=1e-5)
    raise ValueError(kind)


def _run(kind: str, args: argparse.Namespace, device: torch.device, mesh: Any) -> dict[str, Any]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    model, opt = _build(kind, args.d, args.layers, device, mesh)
    seed = 1 if kind == "forge_tp" else 1 + mesh.get_rank()  # TP ranks share their tokens
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(args.tokens, args.d, device=device, generator=g)
    times = []
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda", torch.bfloat16):
            loss = model(x).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    world = mesh.size()
    tokens = args.tokens if kind == "forge_tp" else args.tokens * world  # TP shares its tokens
    peak = torch.cuda.max_memory_allocated(device)
    peaks: list[Any] = [None] * world
    dist.all_gather_object(peaks, peak)
    del model, opt
    return {
        "workload": kind,
        "gpus": world,
        "step_ms": round(step_s * 1e3, 3),
        "tokens_per_s": round(tokens / step_s, 1),
        "peak_memory_bytes_per_gpu": peaks,
        "d": args.d,
        "layers": args.layers,
        "tokens_per_rank": args.tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workloads", default="forge_tp,sage_fsdp,chunkft_dp")
    args = ap.parse_args()
    from torch.distributed.device_mesh import init_device_mesh

    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl")
    mesh = init_device_mesh("cuda", (dist.get_world_size(),))
    rows = [_run(k, args, device, mesh) for k in args.workloads.split(",")]
    if dist.get_rank() == 0:
        meta = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(device)}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        for r in rows:
            print(json.dumps(r))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
