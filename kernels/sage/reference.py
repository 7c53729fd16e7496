"""Literal PyTorch transcriptions of the SAGE, SinkGD and Lion update rules.

These are the CPU path of the optimizers and the oracle of the kernel tests, so they follow the
equations of arXiv 2604.07663 term by term and make no attempt at speed. Each function updates its
tensors in place and works in the dtype of the tensors it is given (the low-precision twin of a
test runs them on bf16 tensors, the fp32 oracle on fp32 copies).

SAGE, per parameter, with ``s_t`` the column mean of ``|g_t|`` over rows for a matrix (the
elementwise ``|g_t|`` for a vector)::

    θ ← θ(1 − ηλ)
    S_t = β2 S_{t−1} + (1−β2) s_t ;  Ŝ_t = S_t / (1 − β2^t)
    σ = sqrt(mean_j Ŝ_j²) ;  γ = sqrt(mean_j s_j²)
    H_j = min(σ/(Ŝ_j+ε), γ/(s_j+ε), 1)
    C = sign(β1 m_{t−1} + (1−β1) g_t) ;  θ ← θ − η (C ⊙ H) ;  m_t = β2 m_{t−1} + (1−β2) g_t

``order="code"`` takes the sign of ``β1 m_t + (1−β1) g_t`` instead (the official code updates the
momentum first).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

MomentumOrder = Literal["paper", "code"]


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """The (rows, cols) view every rule works on: a vector is one row, a tensor of rank ≥ 2 keeps
    its first dimension as rows (so an nn.Embedding's columns are its embedding dimensions)."""
    if t.ndim >= 2:
        return t.reshape(t.shape[0], -1)
    return t.reshape(1, -1)


def sage_column_statistic(g: torch.Tensor) -> torch.Tensor:
    """s_t, shape (cols,): the column mean of |g| over rows for a matrix, |g| for a vector."""
    if g.ndim >= 2:
        return as_matrix(g).abs().mean(dim=0)
    return g.abs().reshape(-1)


def sage_reference_step(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    s_ema: torch.Tensor,
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    order: MomentumOrder = "paper",
) -> torch.Tensor:
    """One SAGE step on `p` (and its state `m`, `s_ema`), in place; returns the scale H (cols,).

    `step` is t, counted from 1 for the first step.
    """
    if order not in ("paper", "code"):
        raise ValueError(f"order must be 'paper' or 'code', not {order!r}")
    # θ ← θ(1 − ηλ)
    p.mul_(1 - lr * weight_decay)
    # S_t = β2 S_{t−1} + (1−β2) s_t ;  Ŝ_t = S_t / (1 − β2^t)
    s = sage_column_statistic(g)
    s_ema.copy_(beta2 * s_ema + (1 - beta2) * s)
    s_hat = s_ema / (1 - beta2**step)
    # σ = sqrt(mean_j Ŝ_j²) ;  γ = sqrt(mean_j s_j²)
    sigma = torch.sqrt(torch.mean(s_hat**2))
    gamma = torch.sqrt(torch.mean(s**2))
    # H_j = min(σ/(Ŝ_j+ε), γ/(s_j+ε), 1)
    h = torch.minimum(sigma / (s_hat + eps), gamma / (s + eps))
    h = torch.minimum(h, torch.ones_like(h))
    # C = sign(β1 m + (1−β1) g) ;  m_t = β2 m_{t−1} + (1−β2) g_t
    m_next = beta2 * m + (1 - beta2) * g
    m_for_sign = m if order == "paper" else m_next
    c = torch.sign(beta1 * m_for_sign + (1 - beta1) * g)
    # θ ← θ − η (C ⊙ H): H scales the columns of the (rows, cols) view.
    update = as_matrix(c) * h.to(c.dtype)
    as_matrix(p).copy_(as_matrix(p) - lr * update)
    m.copy_(m_next)
    return h


def lion_reference_step(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
) -> None:
    """One Lion step (Chen et al. 2023), in place: SAGE with H ≡ 1 and the paper's order."""
    p.mul_(1 - lr * weight_decay)
    c = torch.sign(beta1 * m + (1 - beta1) * g)
    p.copy_(p - lr * c)
    m.copy_(beta2 * m + (1 - beta2) * g)


def sinkgd_reference_update(g: torch.Tensor, *, iters: int = 5, eps: float = 1e-8) -> torch.Tensor:
    """SinkGD's update direction: `iters` alternating ℓ2 normalisations of the gradient's rows (to
    norm sqrt(cols)) and columns (to norm sqrt(rows)), as in Scetbon et al. 2025; returned in the
    (rows, cols) view. Entries then have RMS ≈ 1, like a sign update."""
    x = as_matrix(g).clone()
    rows, cols = x.shape
    for _ in range(iters):
        x = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + eps) * math.sqrt(cols)
        x = x / (torch.linalg.vector_norm(x, dim=0, keepdim=True) + eps) * math.sqrt(rows)
    return x


def sinkgd_reference_step(
    p: torch.Tensor,
    g: torch.Tensor,
    *,
    lr: float,
    weight_decay: float,
    iters: int = 5,
    eps: float = 1e-8,
) -> None:
    """One SinkGD step, in place: θ ← θ(1 − ηλ) − η · SR(g)."""
    p.mul_(1 - lr * weight_decay)
    x = sinkgd_reference_update(g, iters=iters, eps=eps)
    as_matrix(p).copy_(as_matrix(p) - lr * x.to(p.dtype))
