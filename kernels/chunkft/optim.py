"""The drop-in: `ChunkFT(model, optimizer="adamw", chunks=N, interval=K, offload=True)`.

One byte window of the model (a `chunks.partition` chunk) is trained at a time; after `interval`
optimizer steps the next one becomes active (cyclically). The optimizer patches the model's
`nn.Linear` and `nn.Embedding` modules (their `forward` only, on the instance) so backward forms
the input gradient in full and the weight gradient of the active slice only; any other trainable
tensor (norm weights, biases) gets torch's gradient while it is active and none otherwise.
Gradients and AdamW states exist on the device for the active chunk only; the states of the
others live in pinned host memory, copied out on a side stream while the next chunk computes,
the chunk after it prefetched the same way. Layers below the lowest active one record no graph,
so backward stops there.

What it does not do is refused, not ignored: global-norm clipping (the other chunks' gradients
do not exist), parameter groups added later, tied (shared) weights, sparse embeddings, and — with
the AdamW update fused into backward — more than one backward per step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kernels.forge.rules import StepScalars
from kernels.runtime.optim import closure_loss

from .chunks import Piece, StreamTensor, chunk_bytes, partition
from .launch import (
    SlicedEmbeddingFunction,
    SlicedLinearFunction,
    adamw_slice_,
    embedding_dw,
    sliced_dw,
    sliced_dw_adamw_,
)
from .reference import check_strategy

STATE_BYTES = 8  # AdamW: fp32 exp_avg and exp_avg_sq per element
STATE_NAMES = ("exp_avg", "exp_avg_sq")


class ChunkFTUnsupported(RuntimeError):
    """Something ChunkFT cannot do, asked for explicitly."""


@dataclass
class _Entry:
    """One trainable tensor: how it is sliced (dim 0 rows or dim 1 columns) and by what."""

    name: str
    param: nn.Parameter
    kind: str  # "linear", "embedding" or "dense"
    dim: int
    module: nn.Module | None

    def slice_of(self, t: torch.Tensor, start: int, end: int) -> torch.Tensor:
        if t.dim() == 0:
            t = t.reshape(1)
        return t[start:end] if self.dim == 0 else t[:, start:end]

    def stream_tensor(self) -> StreamTensor:
        shape = self.param.shape
        units = shape[self.dim] if self.param.dim() else 1
        return StreamTensor(
            units=units,
            unit_elems=max(self.param.numel() // max(units, 1), 1),
            elem_bytes=self.param.element_size() + STATE_BYTES,
        )


class _Slot:
    """The optimizer's side of one tensor: its active range, and its slice gradient."""

    __slots__ = ("entry", "grad", "opt", "range", "updated")

    def __init__(self, opt: ChunkFT, entry: _Entry) -> None:
        self.opt = opt
        self.entry = entry
        self.range: tuple[int, int] | None = None
        self.grad: torch.Tensor | None = None
        self.updated = False  # fused path: this step's update already happened in backward

    def active(self) -> bool:
        return self.range is not None

    def anchor(self) -> torch.Tensor | None:
        return self.opt._anchor if self.range is not None else None

    def _accumulate(self, g: torch.Tensor) -> None:
        if self.grad is None:
            self.grad = g
        else:
            self.grad.add_(g)

    def linear_backward(self, dy: torch.Tensor, x: torch.Tensor) -> None:
        assert self.range is not None
        start, end = self.range
        strategy = "column" if self.entry.dim == 0 else "row"
        if self.opt.fused:
            if self.updated:
                raise ChunkFTUnsupported(
                    "ChunkFT(fused=True) applies AdamW inside backward: one backward per "
                    "step (no gradient accumulation); use fused=False to accumulate"
                )
            m, v = self.opt._piece_states(self)
            sliced_dw_adamw_(
                dy, x, self.entry.param.data, start, end, m, v, self.opt._scalars(), strategy
            )
            self.updated = True
            return
        self._accumulate(sliced_dw(dy, x, start, end, strategy))

    def embedding_backward(self, ids: torch.Tensor, dy: torch.Tensor) -> None:
        assert self.range is not None
        start, end = self.range
        self._accumulate(embedding_dw(ids, dy, start, end))


class ChunkFT(torch.optim.Optimizer):
    """Full fine-tuning through a moving window of the model (arXiv 2605.21177), AdamW.

    `chunks` byte windows of (parameter + state) bytes; `interval` optimizer steps per window;
    `offload` keeps inactive windows' AdamW states in pinned host memory (CUDA) and `prefetch`
    copies the next window's in while the current one computes; `strategy` slices linear
    weights by output rows ("column", the official default) or input columns ("row"); `fused`
    applies AdamW to linear slices inside backward (no slice gradient is ever written).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: str = "adamw",
        *,
        chunks: int = 4,
        interval: int = 1,
        offload: bool = True,
        prefetch: bool = True,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        strategy: str = "column",
        fused: bool = False,
    ) -> None:
        if optimizer.lower() != "adamw":
            raise ChunkFTUnsupported(f"ChunkFT implements AdamW only, not {optimizer!r}")
        if interval < 1:
            raise ValueError(f"interval must be at least 1, got {interval}")
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError("lr, eps and weight_decay must be >= 0, betas in [0, 1)")
        check_strategy(strategy)
        self.model = model
        self.interval = interval
        self.fused = fused
        entries = self._collect(model, strategy)
        if not entries:
            raise ValueError("the model has no trainable parameters")
        devices = {e.param.device for e in entries}
        if len(devices) != 1:
            raise ChunkFTUnsupported(f"parameters on several devices: {sorted(map(str, devices))}")
        self.device = devices.pop()
        self.entries = entries
        self.stream = [e.stream_tensor() for e in entries]
        self.plan: list[list[Piece]] = partition(self.stream, chunks)
        self.chunks = chunks
        self.offload = offload and chunks > 1
        self.prefetch = prefetch and self.offload
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__([e.param for e in entries], defaults)
        self.slots = [_Slot(self, e) for e in entries]
        self._anchor = torch.zeros((), device=self.device, requires_grad=True)
        self._steps = [0] * chunks  # AdamW steps taken by each chunk (bias correction)
        self._resident: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._host: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        # a chunk's states are views of one flat buffer (m, v of each piece in turn), on the
        # device and in the host buffer alike, so a switch is one copy each way
        self._dev_flat: dict[int, torch.Tensor] = {}
        self._host_block: dict[int, torch.Tensor] = {}
        # ("in" | "out", chunk) -> event after that chunk's last side-stream copy
        self._events: dict[tuple[str, int], Any] = {}
        cuda = self.device.type == "cuda"
        self._side = torch.cuda.Stream(self.device) if cuda and self.offload else None
        self.transfers: list[dict[str, Any]] = []  # per copy: direction, bytes, CUDA events
        self.record_transfers = False
        self.host_pinned = False
        self.active_chunk = 0
        self._since_switch = 0
        for e in entries:
            e.param.requires_grad_(False)
        if self.offload:
            self._allocate_host()
        self._patch()
        self._activate(0)
        if self.prefetch:
            self._prefetch(1 % self.chunks)

    # --- construction ------------------------------------------------------------------------

    @staticmethod
    def _collect(model: nn.Module, strategy: str) -> list[_Entry]:
        counts: dict[int, int] = {}
        for _, p in model.named_parameters(remove_duplicate=False):
            counts[id(p)] = counts.get(id(p), 0) + 1
        shared = [n for n, p in model.named_parameters() if counts[id(p)] > 1 and p.requires_grad]
        if shared:
            raise ChunkFTUnsupported(
                f"tied (shared) weights are not supported: {shared}; untie them first"
            )
        owner: dict[int, tuple[str, nn.Module]] = {}
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Embedding) and mod.weight.requires_grad:
                if mod.sparse or mod.max_norm is not None:
                    raise ChunkFTUnsupported(f"{name}: sparse or max_norm embeddings")
                owner[id(mod.weight)] = ("embedding", mod)
            elif type(mod) is nn.Linear and mod.weight.requires_grad:
                owner[id(mod.weight)] = ("linear", mod)
        entries = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue  # frozen by the caller: not part of the stream
            if p.is_sparse or not p.dtype.is_floating_point:
                raise ChunkFTUnsupported(f"{name}: only dense floating-point parameters")
            if p.dtype not in (torch.float32, torch.bfloat16):
                raise ChunkFTUnsupported(f"{name}: ChunkFT updates fp32 or bf16, not {p.dtype}")
            kind, mod = owner.get(id(p), ("dense", None))
            dim = 1 if kind == "linear" and strategy == "row" else 0
            entries.append(_Entry(name, p, kind, dim, mod))
        return entries

    def _allocate_host(self) -> None:
        """Every chunk's states in host memory from the start (zeros), in one pinned buffer:
        the steady state of offloading, and one allocation (the pinned-memory cache rounds each
        allocation up to a power of two; one buffer pays that once)."""
        sizes = [self._numel(k) for k in range(self.chunks)]
        total = sum(sizes)
        pin = self.device.type == "cuda"
        try:
            flat = torch.zeros(total, dtype=torch.float32, pin_memory=pin)
        except RuntimeError as exc:  # the host cannot pin that much: pageable, and say so
            warnings.warn(
                f"ChunkFT: pinning {4 * total / 1e9:.1f} GB of host memory failed ({exc}); "
                "states live in pageable memory and copies will not overlap compute",
                stacklevel=3,
            )
            flat = torch.zeros(total, dtype=torch.float32)
        self.host_pinned = bool(pin and flat.is_pinned())
        self._host_flat = flat
        at = 0
        for k in range(self.chunks):
            block = flat[at : at + sizes[k]]
            at += sizes[k]
            self._host_block[k] = block
            self._host[k] = self._views(block, k)

    def _numel(self, k: int) -> int:
        """Elements of chunk k's states (m and v of every piece)."""
        return 2 * sum(math.prod(s) for s in self._shapes(k))

    def _views(self, flat: torch.Tensor, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Chunk k's (m, v) per piece as views of its flat state buffer."""
        pairs = []
        at = 0
        for shape in self._shapes(k):
            n = math.prod(shape)
            pairs.append((flat[at : at + n].view(shape), flat[at + n : at + 2 * n].view(shape)))
            at += 2 * n
        return pairs

    def _on_device(self, k: int, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self._dev_flat[k] = flat
        return self._views(flat, k)

    def _patch(self) -> None:
        for slot in self.slots:
            e = slot.entry
            if e.kind == "linear":
                e.module.forward = _linear_forward(e.module, slot)  # type: ignore[union-attr]
            elif e.kind == "embedding":
                e.module.forward = _embedding_forward(e.module, slot)  # type: ignore[union-attr]

    def detach(self) -> None:
        """Give the model its own forwards back and make its parameters trainable again."""
        for slot in self.slots:
            e = slot.entry
            if e.module is not None and "forward" in e.module.__dict__:
                del e.module.forward
            e.param.requires_grad_(True)
            e.param.grad = None

    # --- which chunk is active ---------------------------------------------------------------

    def _activate(self, k: int) -> None:
        self.active_chunk = k
        for slot in self.slots:
            slot.range = None
            slot.grad = None
            slot.updated = False
        for piece in self.plan[k]:
            self.slots[piece.tensor].range = (piece.start, piece.end)
        for slot in self.slots:
            if slot.entry.kind == "dense":
                slot.entry.param.requires_grad_(slot.range is not None)
                slot.entry.param.grad = None
        self._resident[k] = self._bring_in(k)

    def _shapes(self, k: int) -> list[tuple[int, ...]]:
        out = []
        for piece in self.plan[k]:
            e = self.entries[piece.tensor]
            shape = list(e.param.shape) or [1]
            shape[e.dim] = piece.end - piece.start
            out.append(tuple(shape))
        return out

    def _bring_in(self, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Chunk k's states on the device: prefetched, copied in now, or fresh zeros."""
        if k in self._resident:
            event = self._events.pop(("in", k), None)
            if event is not None:
                torch.cuda.current_stream(self.device).wait_event(event)
            return self._resident[k]
        if k not in self._host:
            zeros = torch.zeros(self._numel(k), dtype=torch.float32, device=self.device)
            return self._on_device(k, zeros)
        event = self._events.pop(("out", k), None)
        if event is not None:  # its copy out may still be running on the side stream
            torch.cuda.current_stream(self.device).wait_event(event)
        if k in self._host_block:
            return self._on_device(k, self._host_block[k].to(self.device, non_blocking=True))
        flat = torch.empty(self._numel(k), dtype=torch.float32, device=self.device)
        pairs = self._on_device(k, flat)
        for (m, v), (mh, vh) in zip(pairs, self._host[k], strict=True):
            m.copy_(mh)
            v.copy_(vh)
        return pairs

    def _send_out(self, k: int) -> None:
        """Copy chunk k's states to (pinned) host memory; on CUDA on the side stream, after the
        work queued so far, so the next chunk's compute runs meanwhile."""
        del self._resident[k]
        flat = self._dev_flat.pop(k)
        host = self._host_block[k]  # allocated with the optimizer when offloading
        if self._side is None:
            host.copy_(flat)
            return
        main = torch.cuda.current_stream(self.device)
        self._side.wait_stream(main)
        with torch.cuda.stream(self._side):
            t0 = self._mark()
            host.copy_(flat, non_blocking=True)
            flat.record_stream(self._side)  # freed now, its memory waits for the copy
            self._events[("out", k)] = self._side.record_event()
            self._log("d2h", t0, flat)

    def _prefetch(self, k: int) -> None:
        """Start copying chunk k's states in on the side stream (nothing when it has none)."""
        if k in self._resident or k not in self._host_block or self._side is None:
            return
        main = torch.cuda.current_stream(self.device)
        flat = torch.empty(self._numel(k), dtype=torch.float32, device=self.device)
        self._side.wait_stream(main)  # the buffer's memory may still be in use on main
        with torch.cuda.stream(self._side):
            t0 = self._mark()
            flat.copy_(self._host_block[k], non_blocking=True)
            flat.record_stream(self._side)  # freed early, it must outlive the copy
            self._events[("in", k)] = self._side.record_event()
            self._log("h2d", t0, flat)
        self._resident[k] = self._on_device(k, flat)

    def _mark(self) -> Any:
        if not self.record_transfers:
            return None
        return self._side.record_event(torch.cuda.Event(enable_timing=True))

    def _log(self, direction: str, t0: Any, flat: torch.Tensor) -> None:
        if t0 is None:
            return
        t1 = self._side.record_event(torch.cuda.Event(enable_timing=True))
        nbytes = flat.numel() * flat.element_size()
        self.transfers.append({"direction": direction, "bytes": nbytes, "start": t0, "end": t1})

    def _switch(self) -> None:
        old, new = self.active_chunk, (self.active_chunk + 1) % self.chunks
        if self.offload:
            self._send_out(old)
        self._activate(new)
        if self.prefetch:
            self._prefetch((new + 1) % self.chunks)

    def _piece_states(self, slot: _Slot) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.active_chunk
        for i, piece in enumerate(self.plan[k]):
            if self.slots[piece.tensor] is slot:
                return self._resident[k][i]
        raise AssertionError("a slot outside the active chunk asked for states")

    def _scalars(self) -> StepScalars:
        group = self.param_groups[0]
        return StepScalars.adamw(
            step=self._steps[self.active_chunk] + 1,
            lr=group["lr"],
            betas=group["betas"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
        )

    # --- the optimizer interface -------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """AdamW on the active chunk's slices; after `interval` steps, the next chunk."""
        loss = closure_loss(closure)
        k = self.active_chunk
        sc = self._scalars()
        got = 0
        for i, piece in enumerate(self.plan[k]):
            slot = self.slots[piece.tensor]
            e = slot.entry
            if slot.updated:
                got += 1
                continue
            grad = slot.grad
            if e.kind == "dense":
                full = e.param.grad
                grad = None if full is None else e.slice_of(full, piece.start, piece.end)
                grad = (
                    None if grad is None else grad.float().contiguous().reshape(self._shapes(k)[i])
                )
            if grad is None:
                continue  # no gradient reached this slice (like torch: a None grad is skipped)
            got += 1
            m, v = self._resident[k][i]
            view = e.slice_of(e.param.data, piece.start, piece.end)
            if view.dim() == 0:
                view = view.reshape(1)
            adamw_slice_(view, grad, m, v, sc)
        if got == 0:
            raise ChunkFTUnsupported(
                f"no gradient reached active chunk {k}: was backward run since the last step? "
                "(With reentrant activation checkpointing the graph skips layers whose inputs "
                "need no gradient: use gradient_checkpointing_kwargs={'use_reentrant': False}.)"
            )
        self._steps[k] += 1
        self._since_switch += 1
        for slot in self.slots:
            slot.grad = None
            slot.updated = False
            if slot.entry.kind == "dense":
                slot.entry.param.grad = None
        if self._since_switch >= self.interval and self.chunks > 1:
            self._since_switch = 0
            self._switch()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) the active chunk's slice gradients."""
        for slot in self.slots:
            if slot.grad is not None:
                if set_to_none:
                    slot.grad = None
                else:
                    slot.grad.zero_()
            if slot.entry.param.grad is not None:
                if set_to_none:
                    slot.entry.param.grad = None
                else:
                    slot.entry.param.grad.zero_()

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Refused: a global norm needs every chunk's gradient, and only one chunk's exists."""
        raise ChunkFTUnsupported(
            "global-norm gradient clipping is not possible with ChunkFT: only the active "
            "chunk's gradient exists (the others are never formed)"
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "slots", None) is not None:
            raise ChunkFTUnsupported("ChunkFT takes the whole model once; no groups can be added")
        super().add_param_group(param_group)

    # --- bookkeeping ---------------------------------------------------------------------------

    def chunk_bytes(self, k: int) -> int:
        """Bytes (parameter + AdamW state) of chunk k, as the partition weighed them."""
        return chunk_bytes(self.stream, self.plan[k])

    def state_bytes(self, k: int) -> int:
        """Bytes of chunk k's AdamW states (what one switch moves each way)."""
        return sum(STATE_BYTES * math.prod(s) for s in self._shapes(k))

    def synchronize(self) -> None:
        if self._side is not None:
            self._side.synchronize()

    def state_dict(self) -> dict[str, Any]:
        """Every chunk's states (host copies), steps and the schedule; loadable into a ChunkFT
        built on the same model with the same chunks."""
        self.synchronize()
        state: dict[int, dict[str, Any]] = {}
        for k in range(self.chunks):
            src = self._resident.get(k) or self._host.get(k)
            if src is None:
                continue
            state[k] = {
                "step": self._steps[k],
                STATE_NAMES[0]: [m.detach().to("cpu", copy=True) for m, _ in src],
                STATE_NAMES[1]: [v.detach().to("cpu", copy=True) for _, v in src],
            }
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {
            "state": state,
            "param_groups": groups,
            "chunkft": {
                "chunks": self.chunks,
                "plan": [[(p.tensor, p.start, p.end) for p in ps] for ps in self.plan],
                "active_chunk": self.active_chunk,
                "since_switch": self._since_switch,
                "steps": list(self._steps),
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        meta = state_dict["chunkft"]
        plan = [[(p.tensor, p.start, p.end) for p in ps] for ps in self.plan]
        if meta["chunks"] != self.chunks or [list(map(tuple, ps)) for ps in meta["plan"]] != plan:
            raise ValueError("the state dict was saved for another model or chunking")
        self.synchronize()
        for group, saved in zip(self.param_groups, state_dict["param_groups"], strict=True):
            group.update(saved)
        self._resident.clear()
        self._dev_flat.clear()
        self._events.clear()
        for k, st in state_dict["state"].items():
            k = int(k)
            shapes = self._shapes(k)
            pairs = list(zip(st[STATE_NAMES[0]], st[STATE_NAMES[1]], strict=True))
            if [tuple(m.shape) for m, _ in pairs] != shapes:
                raise ValueError(f"chunk {k}: state shapes do not match the model's slices")
            if k not in self._host:  # not offloading: a host copy to bring in once
                self._host[k] = [(torch.empty_like(m), torch.empty_like(v)) for m, v in pairs]
            for (mh, vh), (m, v) in zip(self._host[k], pairs, strict=True):
                mh.copy_(m)
                vh.copy_(v)
        self._steps = list(meta["steps"])
        self._since_switch = meta["since_switch"]
        self._activate(meta["active_chunk"])
        if self.prefetch:
            self._prefetch((self.active_chunk + 1) % self.chunks)


def _linear_forward(module: nn.Linear, slot: _Slot) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        y = SlicedLinearFunction.apply(x, module.weight, slot.anchor(), slot)
        if module.bias is not None:
            y = y + module.bias.to(y.dtype)
        return y

    return forward


def _embedding_forward(module: nn.Embedding, slot: _Slot) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(ids: torch.Tensor) -> torch.Tensor:
        return SlicedEmbeddingFunction.apply(
            ids, module.weight, slot.anchor(), slot, module.padding_idx
        )

    return forward


class UnchunkedAdamW:
    """The same kernels without chunking: every weight's whole gradient through the slice
    kernels (the slice is the whole tensor), AdamW on whole tensors by `adamw_slice_`. The
    baseline ChunkFT with one chunk must equal bit for bit."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.hyper = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.entries = ChunkFT._collect(model, "column")
        device = self.entries[0].param.device
        self._anchor = torch.zeros((), device=device, requires_grad=True)
        self.slots = [_Slot(self, e) for e in self.entries]  # type: ignore[arg-type]
        self.fused = False
        self.steps = 0
        self.states = [
            (
                torch.zeros_like(e.param, dtype=torch.float32),
                torch.zeros_like(e.param, dtype=torch.float32),
            )
            for e in self.entries
        ]
        for slot in self.slots:
            e = slot.entry
            units = e.param.shape[0] if e.param.dim() else 1
            slot.range = (0, units)
            if e.kind == "linear":
                e.module.forward = _linear_forward(e.module, slot)  # type: ignore[union-attr]
            elif e.kind == "embedding":
                e.module.forward = _embedding_forward(e.module, slot)  # type: ignore[union-attr]
            else:
                continue
            e.param.requires_grad_(False)

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        sc = StepScalars.adamw(step=self.steps, **self.hyper)
        for slot, (m, v) in zip(self.slots, self.states, strict=True):
            e = slot.entry
            grad = slot.grad if e.kind != "dense" else e.param.grad
            if grad is None:
                continue
            view = e.param.data if e.param.dim() else e.param.data.reshape(1)
            adamw_slice_(
                view,
                grad.float().contiguous().reshape(view.shape),
                m.reshape(view.shape),
                v.reshape(view.shape),
                sc,
            )
            slot.grad = None
            e.param.grad = None
