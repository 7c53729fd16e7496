"""What several claims' measurements need, once: the environment figures of the run, the
training corpus with its figures, and the learning-rate schedule of the training-based checks.
(Torch is imported here: measure-side only, never from a spec.)"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from kernels.runtime.device import describe


def environment_figures(device: torch.device) -> dict[str, str]:
    """``env_*`` figures: the device's name, memory and mode, and the library versions."""
    import triton

    env = {
        **describe(device),
        "torch": str(torch.__version__),
        "triton": triton.__version__,
        "python": platform.python_version(),
    }
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        pass
    return {f"env_{k}": v for k, v in env.items()}


def warmup_cosine(warmup: int, total: int, floor: float = 0.1) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to `floor`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def shakespeare_with_figures() -> tuple[Any, dict[str, float | int | str]]:
    """The Shakespeare corpus (``replication.data``) and its ``data_*`` figures: token counts,
    vocabulary size, digest, and the seconds it took to load (``seconds_data``)."""
    from replication.data import load_shakespeare

    t0 = time.perf_counter()
    corpus = load_shakespeare()
    figures: dict[str, float | int | str] = {
        "data_train_tokens": int(corpus.train.numel()),
        "data_eval_tokens": int(corpus.eval.numel()),
        "data_vocab_size": corpus.vocab_size,
        "data_corpus_sha256": corpus.digest,
        "seconds_data": time.perf_counter() - t0,
    }
    return corpus, figures
