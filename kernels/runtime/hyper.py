"""Checks of an optimizer's hyper-parameters, the same for every paper's drop-in optimizer, so
a bad value fails at construction with one message wherever it is given."""

from __future__ import annotations


def check_hyper(
    *,
    lr: float,
    weight_decay: float = 0.0,
    eps: float = 0.0,
    betas: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """Raise ValueError for a negative lr, eps or weight decay, or betas outside [0, 1); return
    the betas as floats (None when there are none)."""
    if lr < 0.0:
        raise ValueError(f"invalid learning rate: {lr}")
    if eps < 0.0:
        raise ValueError(f"invalid eps: {eps}")
    if weight_decay < 0.0:
        raise ValueError(f"invalid weight_decay: {weight_decay}")
    if betas is None:
        return None
    b1, b2 = (float(b) for b in betas)
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"invalid betas: {betas} (each must lie in [0, 1))")
    return b1, b2
