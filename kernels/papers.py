"""The papers reproduced under ``kernels/``: name -> arXiv id, title and package.

A sixth paper adds one line here and a folder of the same shape (``reference.py``,
``kernels.py``, ``launch.py``, ``optim.py`` and/or ``modules.py``, ``NOTES.md``); a test walks
this registry and checks every folder has that shape and its public API imports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """One reproduced paper and where its kernels live."""

    name: str
    arxiv: str
    title: str
    module: str  # the importable package, e.g. "kernels.forge"


PAPERS: dict[str, Paper] = {
    p.name: p
    for p in (
        Paper(
            "chunkft",
            "2605.21177",
            "ChunkFT: Byte-Streamed Optimization for Memory-Efficient Full Fine-Tuning",
            "kernels.chunkft",
        ),
        Paper(
            "forge",
            "2606.22932",
            "FORGE: the optimizer step fused into the weight-gradient GEMM",
            "kernels.forge",
        ),
        Paper(
            "fp4",
            "2501.17116",
            "Optimizing LLM Training Using FP4 Quantization: DGE and outlier clamping",
            "kernels.fp4",
        ),
        Paper(
            "poet",
            "2603.05500",
            "POET-X: orthogonal equivalence training with permuted block rotations",
            "kernels.poet",
        ),
        Paper(
            "sage",
            "2604.07663",
            "SAGE: sign-based adaptive optimizer with O(d) state for embeddings",
            "kernels.sage",
        ),
    )
}

# every paper folder has these files; it also has optim.py or modules.py (its drop-in)
REQUIRED_FILES = ("__init__.py", "reference.py", "kernels.py", "launch.py", "NOTES.md")
DROP_IN_FILES = ("optim.py", "modules.py")
