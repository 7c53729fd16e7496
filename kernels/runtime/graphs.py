"""Whole-step CUDA graph capture: forward, backward and the optimizer step replayed as one graph.

At small batches a training step is paced by the host issuing hundreds of small launches, not
by the GPU running them. Captured once, the step replays from one host call: the host cannot
slow it down. This is torch's "whole network capture" recipe (torch.cuda.graphs docs), written
once for any optimizer that keeps its step state on the device — torch's own with
`capturable=True` (AdamW, Adam, fused or not) or a FORGE optimizer built with `capturable=True`:

    opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3, device="cuda"),
                            fused=True, capturable=True)
    step = capture_step(model, opt, lambda m, x, y: F.cross_entropy(m(x), y), (x0, y0))
    for x, y in batches:
        loss = step(x, y)  # copies x, y into the graph's inputs, replays, returns its loss

What a replay cannot see, it refuses rather than ignores: a Python-number hyper-parameter (a
float lr a scheduler reassigns) is baked into the graph at capture, so each call checks the
optimizer's parameter groups against the values captured and raises if one changed. Give
such a value as a device tensor and change it in place (torch's LR schedulers `fill_` a tensor
lr) and every replay reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

LossFn = Callable[..., torch.Tensor]


def is_capturable(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` keeps its step state on the device: a FORGE optimizer's
    `capturable` attribute, else torch's per-group "capturable" flag (every group)."""
    flag = getattr(optimizer, "capturable", None)
    if isinstance(flag, bool):
        return flag
    groups = optimizer.param_groups
    return bool(groups) and all(bool(g.get("capturable", False)) for g in groups)


def _snapshot(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group's hyper-parameters as captured: tensors by identity, the rest by value."""
    return [{k: v for k, v in g.items() if k != "params"} for g in groups]


def _same(captured: Any, now: Any) -> bool:
    if torch.is_tensor(captured) or torch.is_tensor(now):
        return captured is now
    return type(captured) is type(now) and captured == now


class CapturedStep:
    """One captured training step; call it with a batch shaped like the example one.

    Captured with `split=True`, the step is two graphs in one memory pool: `graph` holds the
    forward (and loss), `backward_graph` the backward and the optimizer step. `replay()` runs
    both; `replay_forward()` and `replay_backward_step()` run one each, so a benchmark can time
    backward + step alone (what FORGE changes) while both still replay."""

    def __init__(
        self,
        graph: torch.cuda.CUDAGraph,
        inputs: tuple[torch.Tensor, ...],
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        backward_graph: torch.cuda.CUDAGraph | None = None,
    ) -> None:
        self.graph = graph
        self.backward_graph = backward_graph
        self.inputs = inputs  # the graph's static input buffers
        self.loss = loss  # the graph's static loss (overwritten by each replay)
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps  # real steps taken on the example batch before capture
        self._hyper = _snapshot(optimizer.param_groups)

    def check_hyperparameters(self) -> None:
        """Raise if a parameter group's value the graph baked in has changed since capture."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self._hyper):
            raise RuntimeError("the optimizer's parameter groups changed after capture_step")
        for i, (group, captured) in enumerate(zip(groups, self._hyper, strict=True)):
            for key, value in captured.items():
                now = group.get(key)
                if not _same(value, now):
                    raise RuntimeError(
                        f"param_groups[{i}][{key!r}] changed after capture_step ({value!r} -> "
                        f"{now!r}): the graph replays the value it captured. Give it as a device "
                        "tensor changed in place (LR schedulers fill_ a tensor lr), or capture "
                        "again"
                    )

    def replay(self) -> torch.Tensor:
        """Replay on the inputs already in `self.inputs`; returns the static loss tensor."""
        self.check_hyperparameters()
        self.graph.replay()
        if self.backward_graph is not None:
            self.backward_graph.replay()
        return self.loss

    def _split(self) -> torch.cuda.CUDAGraph:
        if self.backward_graph is None:
            raise RuntimeError("the step was captured as one graph: capture with split=True")
        return self.backward_graph

    def replay_forward(self) -> torch.Tensor:
        """Replay the forward graph alone (a split capture); returns the static loss tensor.
        Follow it with `replay_backward_step()`: together they are one training step."""
        self._split()
        self.check_hyperparameters()
        self.graph.replay()
        return self.loss

    def replay_backward_step(self) -> None:
        """Replay backward + optimizer step (a split capture) on the activations the last
        `replay_forward()` left. The step's graph bakes the hyper-parameters in too: checked
        here as well (a scheduler may change them between the halves)."""
        graph = self._split()
        self.check_hyperparameters()
        graph.replay()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Copy `inputs` into the graph's input buffers, replay, return the static loss (read
        it before the next call, or clone it: the next replay overwrites it)."""
        if len(inputs) != len(self.inputs):
            raise TypeError(
                f"the step was captured with {len(self.inputs)} inputs, got {len(inputs)}"
            )
        for i, (buf, new) in enumerate(zip(self.inputs, inputs, strict=True)):
            if new.shape != buf.shape or new.dtype != buf.dtype:
                raise ValueError(
                    f"input {i}: captured as {tuple(buf.shape)} {buf.dtype}, got "
                    f"{tuple(new.shape)} {new.dtype} (a graph has fixed shapes: capture again)"
                )
            buf.copy_(new, non_blocking=True)
        return self.replay()


def capture_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    example_inputs: Sequence[torch.Tensor] | torch.Tensor,
    *,
    warmup: int = 3,
    pool: Any = None,
    split: bool = False,
) -> CapturedStep:
    """Capture forward, backward and `optimizer.step()` of one training step in a CUDA graph.

    `loss_fn(model, *inputs)` returns the scalar loss. The `warmup` steps before the capture run
    eagerly on a side stream, as torch's recipe asks (they let lazy state, autotuning and
    cuBLAS workspaces be created outside the graph); they are real steps on the example batch,
    counted in `CapturedStep.warmup_steps`. Gradients are set to None before the capture, so the
    graph's backward writes them afresh each replay (no zeroing inside). Each call of the result
    is one more step. `split=True` captures the forward and backward + step as two graphs in
    one pool (the forward graph's activations are the backward graph's inputs, as in
    `torch.cuda.make_graphed_callables`), so each half can be replayed and timed on its own.
    Raises on a machine without CUDA, CPU inputs or parameters, and an optimizer that keeps
    host-side step state (`capturable=False`).
    """
    if not torch.cuda.is_available():
        raise RuntimeError("capture_step needs a CUDA device (CUDA graphs)")
    if not is_capturable(optimizer):
        raise ValueError(
            f"{type(optimizer).__name__} was not built with capturable=True: its step count "
            "and learning rate live on the host, so a replayed step would repeat the captured "
            "one. Build it with capturable=True (torch: also fused=True or foreach)"
        )
    if warmup < 1:
        raise ValueError("warmup must be at least 1: lazy state and tuning must not be captured")
    inputs = (example_inputs,) if torch.is_tensor(example_inputs) else tuple(example_inputs)
    if not all(torch.is_tensor(t) and t.is_cuda for t in inputs):
        raise ValueError("example_inputs must be CUDA tensors")
    if any(not p.is_cuda for p in model.parameters()):
        raise ValueError("the model's parameters must be on the CUDA device")
    static = tuple(t.detach().clone() for t in inputs)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model, *static).backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    if not split:
        with torch.cuda.graph(graph, pool=pool):
            loss = loss_fn(model, *static)
            loss.backward()
            optimizer.step()
        return CapturedStep(graph, static, loss.detach(), optimizer, warmup)
    with torch.cuda.graph(graph, pool=pool):
        loss = loss_fn(model, *static)
    backward = torch.cuda.CUDAGraph()
    with torch.cuda.graph(backward, pool=graph.pool()):
        loss.backward()
        optimizer.step()
    return CapturedStep(graph, static, loss.detach(), optimizer, warmup, backward)
