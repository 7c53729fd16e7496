"""ChunkFT on data-parallel ranks: only the active chunk's gradient crosses the wire.

Each rank runs forward and backward on its own micro-batch; backward forms the weight gradient
of the active chunk's slices only, so before the step those slices (and the active dense
tensors' gradients) are averaged across ranks in one all-reduce of one flat buffer — 1/chunks of
what DistributedDataParallel would reduce — and every rank applies the same AdamW to the same
slices. The model and every chunk's states are replicated, as in DDP; what each rank holds is
reported by `memory_report` (peak device memory on CUDA, resident and host state bytes, the
gradient bytes reduced per step).

The update fused into backward (`fused=True`) is refused: it would step each rank's slice with
its own gradient, before any average exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from kernels.runtime.optim import closure_loss

from .optim import ChunkFT, ChunkFTUnsupported


class DistributedChunkFT(ChunkFT):
    """`ChunkFT` whose step first averages the active chunk's gradients over `group`'s ranks.

    Takes ChunkFT's arguments; every rank must build it on the same model (same initial
    weights, same `chunks`), so all ranks walk the same chunks in step.
    """

    def __init__(
        self, model: nn.Module, optimizer: str = "adamw", *, group: Any = None, **kwargs: Any
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DistributedChunkFT needs torch.distributed initialised")
        if kwargs.get("fused"):
            raise ChunkFTUnsupported(
                "DistributedChunkFT cannot fuse AdamW into backward: each rank would step with "
                "its own gradient before the average across ranks exists; use fused=False"
            )
        self.group = group
        self.world = dist.get_world_size(group)
        self.reduced_bytes = 0  # gradient bytes all-reduced by the last step
        super().__init__(model, optimizer, **kwargs)

    def _active_grads(self) -> list[tuple[Any, torch.Tensor | None, tuple[int, ...]]]:
        """(slot, its gradient or None, the gradient's shape) of each active piece."""
        out = []
        k = self.active_chunk
        for piece, shape in zip(self.plan[k], self._shapes(k), strict=True):
            slot = self.slots[piece.tensor]
            if slot.entry.kind == "dense":
                g = slot.entry.param.grad
                full_shape = tuple(slot.entry.param.shape)
                out.append((slot, g, full_shape))
            else:
                out.append((slot, slot.grad, shape))
        return out

    @torch.no_grad()
    def average_gradients(self) -> None:
        """Average the active chunk's gradients across ranks (one all-reduce). A piece that got
        no gradient on some rank counts as zeros there; on none, it stays without one."""
        items = self._active_grads()
        if not items:
            return
        device = self.device
        sizes = [math.prod(shape) for _, _, shape in items]
        flat = torch.zeros(sum(sizes) + len(items), dtype=torch.float32, device=device)
        at = 0
        for (_, g, _), n in zip(items, sizes, strict=True):
            if g is not None:
                flat[at : at + n].copy_(g.reshape(-1))
            at += n
        present = flat[at:]
        for i, (_, g, _) in enumerate(items):
            present[i] = 0.0 if g is None else 1.0
        dist.all_reduce(flat, group=self.group)
        flat[:at].div_(self.world)
        self.reduced_bytes = flat.numel() * flat.element_size()
        at = 0
        for i, ((slot, g, shape), n) in enumerate(zip(items, sizes, strict=True)):
            avg = flat[at : at + n].view(shape)
            at += n
            if present[i].item() == 0:
                continue
            if slot.entry.kind == "dense":
                p = slot.entry.param
                if p.grad is None:
                    p.grad = avg.to(p.dtype).clone()
                else:
                    p.grad.copy_(avg)
            elif g is None:
                slot.grad = avg.to(slot.entry.param.dtype).clone()
            else:
                g.copy_(avg)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Average the active chunk's gradients across ranks, then ChunkFT's step."""
        loss = closure_loss(closure)
        self.average_gradients()
        super().step()
        return loss


def memory_report(opt: ChunkFT) -> dict[str, Any]:
    """What this rank holds for ChunkFT: peak device memory (CUDA; None on the CPU), the
    active chunk's states on the device, all states in host memory, and the gradient bytes the
    last step reduced."""
    device = opt.device
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    resident = sum(
        m.numel() * m.element_size() + v.numel() * v.element_size()
        for pairs in opt._resident.values()
        for m, v in pairs
    )
    host = sum(t.numel() * t.element_size() for t in opt._host_block.values())
    params = sum(e.param.numel() * e.param.element_size() for e in opt.entries)
    return {
        "rank": dist.get_rank() if dist.is_initialized() else 0,
        "device": str(device),
        "peak_device_bytes": peak,
        "param_bytes": params,
        "resident_state_bytes": resident,
        "host_state_bytes": host,
        "reduced_gradient_bytes": getattr(opt, "reduced_bytes", 0),
    }


def memory_reports(opt: ChunkFT, group: Any = None) -> list[dict[str, Any]]:
    """Every rank's `memory_report`, in rank order, on every rank."""
    mine = memory_report(opt)
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, mine, group=group)
    return out
