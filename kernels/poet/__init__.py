"""POET-X (arXiv 2603.05500): orthogonal equivalence training, W = R·W0·P with W0 frozen and R, P
block-diagonal rotations under random permutations, built from Cayley–Neumann polynomials.

Public API: the kernels (``cayley_neumann``, ``skew_from_vec``, ``vec_from_skew``,
``block_rotate``, ``poet_linear``), the layer ``POETLinear``, ``patch(model, block=256)`` for an
HF Llama, and the optimizer ``POETAdamW`` (merge-then-reinitialise every ``merge_interval`` steps).
"""

from kernels.poet.launch import block_rotate_ as block_rotate
from kernels.poet.launch import cayley_neumann, poet_linear, skew_from_vec, vec_from_skew
from kernels.poet.modules import POETLinear, patch, poet_layers
from kernels.poet.optim import POETAdamW, poet_param_groups
from kernels.poet.reference import NEUMANN3, TAYLOR4

__all__ = [
    "NEUMANN3",
    "TAYLOR4",
    "POETAdamW",
    "POETLinear",
    "block_rotate",
    "cayley_neumann",
    "patch",
    "poet_layers",
    "poet_linear",
    "poet_param_groups",
    "skew_from_vec",
    "vec_from_skew",
]
