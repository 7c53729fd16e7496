"""The optimizer of POET-X: AdamW with a POET group and merge-then-reinitialise.

``POETAdamW(model, lr, poet_lr)`` keeps ``optimizer.step()``: every ``merge_interval`` steps it
folds each POETLinear's rotations into its base weight, draws new permutations, resets θ to 0 and
drops θ's AdamW state (the paper's merge-then-reinitialise). θ takes no weight decay (the
rotations carry no scale to decay); every other trainable parameter (embeddings, norms, the
output head) is trained by AdamW as usual.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kernels.poet.modules import poet_layers


def poet_param_groups(
    model: nn.Module, lr: float, poet_lr: float, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """[POET θ group (lr=poet_lr, no decay), the rest (lr, weight_decay)] of `model`."""
    theta = {id(layer.theta) for layer in poet_layers(model)}
    poet = [p for p in model.parameters() if id(p) in theta and p.requires_grad]
    rest = [p for p in model.parameters() if id(p) not in theta and p.requires_grad]
    if not poet:
        raise ValueError("the model has no POETLinear: call kernels.poet.patch(model) first")
    groups: list[dict[str, Any]] = [
        {"params": poet, "lr": poet_lr, "weight_decay": 0.0, "poet": True}
    ]
    if rest:
        groups.append({"params": rest, "lr": lr, "weight_decay": weight_decay, "poet": False})
    return groups


class POETAdamW(torch.optim.AdamW):
    """AdamW over a POET-patched model, merging every `merge_interval` steps (0: never)."""

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        poet_lr: float = 2.5e-4,
        *,
        weight_decay: float = 0.01,
        merge_interval: int = 200,
        merge_seed: int = 0,
        **adamw_kwargs: Any,
    ) -> None:
        if merge_interval < 0:
            raise ValueError("merge_interval must be ≥ 0")
        super().__init__(poet_param_groups(model, lr, poet_lr, weight_decay), lr=lr, **adamw_kwargs)
        self.layers = poet_layers(model)
        self.merge_interval = merge_interval
        self.merges = 0
        self.steps_done = 0
        self._merge_gen = torch.Generator().manual_seed(merge_seed)

    @torch.no_grad()
    def merge(self) -> None:
        """Merge every layer now and drop the POET group's state."""
        for layer in self.layers:
            layer.merge(self._merge_gen)
        for group in self.param_groups:
            if group.get("poet"):
                for p in group["params"]:
                    self.state.pop(p, None)
        self.merges += 1

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = super().step(closure)
        self.steps_done += 1
        if self.merge_interval and self.steps_done % self.merge_interval == 0:
            self.merge()
        return loss
