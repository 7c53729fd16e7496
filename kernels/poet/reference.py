"""Plain-PyTorch POET-X: the oracle of every kernel, and the CPU path of the layer.

Notation (one layer, nn.Linear convention y = x·W_effᵀ, W_eff of shape [out, in]):

- the free parameters of one b×b block are the b(b−1)/2 entries above the diagonal, row-major
  (``torch.triu_indices(b, b, 1)`` order); Q = U − Uᵀ is skew-symmetric;
- the Cayley–Neumann rotation is R = I + 2Q + 2Q² + 2Q³ + c·Q⁴. ``c = 2`` (our choice, the
  released PyTorch fallback) is the degree-4 Taylor polynomial of the exact Cayley transform
  (I+Q)(I−Q)⁻¹ and gives RᵀR − I = 4Q⁶ + 4Q⁸; ``c = 1`` (the released Triton kernel) is
  (I+Q)(I+Q+Q²+Q³) and gives RᵀR − I = −2Q⁴ + Q⁸. Same cost, two orders more orthogonal;
- the layer keeps its frozen base weight in a permuted frame, W0p = W0[perm_out][:, perm_in]
  (permutations drawn at every merge), so that only one gather (input) and one scatter
  (output) remain per forward:

      h = x[:, perm_in] · blockdiag(P_k)        (N × in)
      v = h · W0pᵀ                              (N × out)
      y[:, perm_out] = v · blockdiag(R_k)       (N × out)

  W_eff = G_out·D_Rᵀ·W0p·D_Pᵀ·G_inᵀ, with G the permutation matrices (G[perm[i], i] = 1) and
  D the block-diagonal matrices: R_full = G_out·D_Rᵀ·G_outᵀ and P_full = G_in·D_Pᵀ·G_inᵀ are
  orthogonal and W_eff = R_full·W0·P_full, the POET weight.
"""

from __future__ import annotations

import torch

TAYLOR4 = 2.0  # coefficient c of Q⁴: degree-4 Taylor of the exact Cayley transform (our choice)
NEUMANN3 = 1.0  # c of the released Triton kernel: (I+Q)(I+Q+Q²+Q³)


def n_free(block: int) -> int:
    """Free parameters of one skew-symmetric block: b(b−1)/2."""
    return block * (block - 1) // 2


def skew_from_vec(theta: torch.Tensor, block: int) -> torch.Tensor:
    """[nb, b(b−1)/2] → skew-symmetric [nb, b, b] (upper triangle row-major, lower = −upper)."""
    if theta.ndim != 2 or theta.shape[1] != n_free(block):
        raise ValueError(f"theta must be [nb, {n_free(block)}] for block {block}")
    rows, cols = torch.triu_indices(block, block, 1, device=theta.device)
    q = theta.new_zeros(theta.shape[0], block, block)
    q[:, rows, cols] = theta
    return q - q.transpose(1, 2)


def vec_from_skew(q: torch.Tensor) -> torch.Tensor:
    """The upper triangle of [nb, b, b] as [nb, b(b−1)/2] (inverse of skew_from_vec on skew q)."""
    b = q.shape[-1]
    rows, cols = torch.triu_indices(b, b, 1, device=q.device)
    return q[:, rows, cols]


def vec_grad_from_skew_grad(dq: torch.Tensor) -> torch.Tensor:
    """The gradient of the packed parameters from dL/dQ: dθ_ij = dQ_ij − dQ_ji."""
    b = dq.shape[-1]
    rows, cols = torch.triu_indices(b, b, 1, device=dq.device)
    return dq[:, rows, cols] - dq[:, cols, rows]


def cayley_exact(q: torch.Tensor) -> torch.Tensor:
    """(I+Q)(I−Q)⁻¹ by a linear solve, batched (the exact Cayley transform)."""
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device).expand_as(q)
    # R (I − Q) = (I + Q)  ⇔  (I − Q)ᵀ Rᵀ = (I + Q)ᵀ
    return torch.linalg.solve((eye - q).transpose(-1, -2), (eye + q).transpose(-1, -2)).transpose(
        -1, -2
    )


def cayley_neumann(q: torch.Tensor, c: float = TAYLOR4) -> torch.Tensor:
    """R = I + 2Q + 2Q² + 2Q³ + c·Q⁴ by batched matmuls (autograd flows through)."""
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    q2 = q @ q
    return eye + 2 * q + 2 * q2 + q2 @ (2 * q + c * q2)


def orthogonality_error(r: torch.Tensor) -> torch.Tensor:
    """max over blocks of the spectral norm ‖RᵀR − I‖₂, in float64."""
    r64 = r.double()
    eye = torch.eye(r.shape[-1], dtype=torch.float64, device=r.device)
    return torch.linalg.matrix_norm(r64.transpose(-1, -2) @ r64 - eye, ord=2).max()


def block_rotate(
    x: torch.Tensor,
    blocks: torch.Tensor,
    gather: torch.Tensor | None = None,
    scatter: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[:, oc(k, n)] = Σ_j x[:, ic(k, j)]·blocks[k, j, n] with ic = gather (or identity),
    oc = scatter (or identity): the permuted block-diagonal rotation of rows of x."""
    nb, b, _ = blocks.shape
    src = x if gather is None else x[:, gather]
    out = torch.einsum("mkj,kjn->mkn", src.reshape(-1, nb, b), blocks).reshape(x.shape[0], nb * b)
    if scatter is None:
        return out
    res = torch.empty_like(out)
    res[:, scatter] = out
    return res


def block_rotate_grad(
    x: torch.Tensor,
    dy: torch.Tensor,
    nb: int,
    gather_x: torch.Tensor | None = None,
    gather_dy: torch.Tensor | None = None,
) -> torch.Tensor:
    """dB[k] = x_kᵀ·dy_k in fp32 (x_k, dy_k: the k-th block of columns after the gathers)."""
    xs = (x if gather_x is None else x[:, gather_x]).float()
    ds = (dy if gather_dy is None else dy[:, gather_dy]).float()
    b = xs.shape[1] // nb
    return torch.einsum("mkj,mkn->kjn", xs.reshape(-1, nb, b), ds.reshape(-1, nb, b))


def poet_linear(
    x: torch.Tensor,
    w0p: torch.Tensor,
    r_blocks: torch.Tensor,
    p_blocks: torch.Tensor,
    perm_in: torch.Tensor,
    perm_out: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The input-centric layer (see the module docstring) on a 2-D x, in plain torch."""
    h = block_rotate(x, p_blocks.to(x.dtype), gather=perm_in)
    v = h @ w0p.to(x.dtype).t()
    y = block_rotate(v, r_blocks.to(x.dtype), scatter=perm_out)
    return y if bias is None else y + bias.to(y.dtype)


def dense_rotation(blocks: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The full orthogonal matrix G·Dᵀ·Gᵀ of a permuted block-diagonal rotation (materialised)."""
    inv = torch.argsort(perm)
    d = torch.block_diag(*blocks.transpose(1, 2).unbind(0))
    return d[inv][:, inv]


def effective_weight(
    w0p: torch.Tensor,
    r_blocks: torch.Tensor,
    p_blocks: torch.Tensor,
    perm_in: torch.Tensor,
    perm_out: torch.Tensor,
) -> torch.Tensor:
    """W_eff = R_full·W0·P_full with W0 = W0p in the natural frame, by dense matmuls (the
    original POET's way: the m×n transformed weight materialised)."""
    inv_in, inv_out = torch.argsort(perm_in), torch.argsort(perm_out)
    w0 = w0p[inv_out][:, inv_in]
    return dense_rotation(r_blocks, perm_out) @ w0 @ dense_rotation(p_blocks, perm_in)


def naive_poet_linear(
    x: torch.Tensor,
    w0: torch.Tensor,
    r_blocks: torch.Tensor,
    p_blocks: torch.Tensor,
    perm_in: torch.Tensor,
    perm_out: torch.Tensor,
) -> torch.Tensor:
    """The original POET's layer: dense R and P materialised in x's dtype, W_eff = R·W0·P formed
    by two dense GEMMs, then x·W_effᵀ (W0 in the natural frame). The speed baseline."""
    dtype = x.dtype
    w_eff = (
        dense_rotation(r_blocks.to(dtype), perm_out)
        @ w0
        @ dense_rotation(p_blocks.to(dtype), perm_in)
    )
    return x @ w_eff.t()
