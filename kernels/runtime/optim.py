"""What every paper's optimizers share with torch's Optimizer contract, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """`step(closure)`'s first duty: re-evaluate the model with gradients on (a step runs under
    no_grad) and hand back its loss; None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
