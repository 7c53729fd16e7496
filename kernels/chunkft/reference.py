"""Plain-PyTorch ChunkFT: the CPU path and the oracle the Triton kernels are tested against.

The slice gradient is the full weight gradient formed in fp32 (TF32 off) and then sliced, so the
oracle shares nothing with the kernel's strided reads. The AdamW step is FORGE's reference rule
(the same tensor operations as ``torch.optim.AdamW(foreach=False)``), bf16 weights updated in
fp32 and rounded back to nearest.
"""

from __future__ import annotations

import torch

from kernels.forge.reference import apply_update_, tf32_off
from kernels.forge.rules import Rule, StepScalars

STRATEGIES = ("column", "row")


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy is 'column' (dW[s:e, :]) or 'row' (dW[:, s:e]), not {strategy!r}"
        )


def sliced_dw_reference(
    dy: torch.Tensor, x: torch.Tensor, start: int, end: int, strategy: str = "column"
) -> torch.Tensor:
    """The slice of dW = dYᵀ·X (dy [T, N], x [T, K]) the strategy names, in fp32:
    "column" -> dW[start:end, :], "row" -> dW[:, start:end]."""
    check_strategy(strategy)
    with tf32_off():
        full = dy.reshape(-1, dy.shape[-1]).float().t() @ x.reshape(-1, x.shape[-1]).float()
    return (full[start:end] if strategy == "column" else full[:, start:end]).contiguous()


def embedding_dw_reference(
    ids: torch.Tensor, dy: torch.Tensor, start: int, end: int
) -> torch.Tensor:
    """Rows [start, end) of the embedding gradient: Σ dY[t] into row ids[t] − start for every
    token whose id lies in the range (fp32, index_add_ like ChunkFT's CustomEmbeddingGrad)."""
    ids = ids.reshape(-1)
    dy = dy.reshape(ids.numel(), -1).float()
    out = torch.zeros(end - start, dy.shape[1], dtype=torch.float32, device=dy.device)
    hit = (ids >= start) & (ids < end)
    out.index_add_(0, ids[hit] - start, dy[hit])
    return out


def adamw_slice_reference_(
    weight: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    sc: StepScalars,
) -> None:
    """AdamW on a slice (any view) of fp32 or bf16 weights, fp32 gradient and states, in place."""
    with torch.no_grad():
        if weight.is_contiguous():
            apply_update_(Rule.ADAMW, sc, weight, grad, (exp_avg, exp_avg_sq), stochastic=False)
            return
        tmp = weight.clone()
        apply_update_(Rule.ADAMW, sc, tmp, grad, (exp_avg, exp_avg_sq), stochastic=False)
        weight.copy_(tmp)


def sliced_dw_adamw_reference_(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    start: int,
    end: int,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    sc: StepScalars,
    strategy: str = "column",
) -> None:
    """What the fused kernel computes, unfused: the slice gradient, then AdamW on the slice."""
    g = sliced_dw_reference(dy, x, start, end, strategy)
    view = weight[start:end] if strategy == "column" else weight[:, start:end]
    adamw_slice_reference_(view, g, exp_avg, exp_avg_sq, sc)
