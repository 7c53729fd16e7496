"""What several claims' measurements need, once: the environment figures of the run, the
training corpus with its figures, and the learning-rate schedule of the training-based checks.
(Torch is imported here: measure-side only, never from a spec.)"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from kernels.runtime.device import describe


@dataclass(frozen=True)
class TrainingProfile:
    """What a profile's training comparison runs (a claim's Profile adds its own fields)."""

    model_size: str  # a named size of ``replication.models``
    seq_len: int
    batch_size: int
    steps: int
    warmup_steps: int
    eval_batches: int
    seeds: tuple[int, ...]


def environment_figures(device: torch.device, *, python: bool = True) -> dict[str, str]:
    """``env_*`` figures: the device's name, memory and mode, and the library versions
    (`python=False`: without ``env_python``, the figure names POET-X's and ChunkFT's records
    have always had)."""
    import triton

    env = {
        **describe(device),
        "torch": str(torch.__version__),
        "triton": triton.__version__,
    }
    if python:
        env["python"] = platform.python_version()
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


def claim_device(profile: str, known: Any) -> torch.device:
    """The device a claim measures on: CUDA when there is one, else the CPU. An unknown
    `profile` (not in `known`) is a ValueError; ``full`` without CUDA a RuntimeError."""
    if profile not in known:
        raise ValueError(f"unknown profile {profile!r}; known: {tuple(known)}")
    cuda = torch.cuda.is_available()
    if profile == "full" and not cuda:
        raise RuntimeError("the full profile needs a CUDA device")
    return torch.device("cuda" if cuda else "cpu")


def train_loop(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterator[torch.Tensor],
    steps: int,
    device: torch.device,
    clip_norm: float,
    *,
    timed_from: int = 0,
    before_step: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, float]:
    """`steps` steps of next-token training (bf16 autocast on CUDA, gradients clipped to
    `clip_norm`, `sched` stepped after each optimizer step); (the last step's loss, seconds from
    the start of step `timed_from` to the end, the device drained at both ends). `before_step`
    is called with the step index between clipping and the optimizer step (POET-X reads ‖Q‖
    there on merging steps)."""
    from kernels.runtime.timing import sync

    cuda = device.type == "cuda"
    last = torch.zeros((), device=device)
    t0 = time.perf_counter()
    for step in range(steps):
        if step == timed_from:
            sync(device)
            t0 = time.perf_counter()
        ids = next(batches).to(device, non_blocking=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        if before_step is not None:
            before_step(step)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        last = loss.detach()
    sync(device)
    return last, time.perf_counter() - t0


def eval_loss(
    model: torch.nn.Module, batches: Iterable[torch.Tensor], device: torch.device
) -> float:
    """Mean next-token loss over fixed eval batches (the float32 losses averaged on the device;
    bf16 autocast on CUDA as in training); the model is left in training mode."""
    model.eval()
    losses = []
    with (
        torch.no_grad(),
        torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
    ):
        for ids in batches:
            ids = ids.to(device)
            losses.append(model(input_ids=ids, labels=ids).loss.float())
    model.train()
    return float(torch.stack(losses).mean())


def large_llama_config(**shape: Any) -> Any:
    """A transformers LlamaConfig of `shape` for memory measurements: untied embeddings, no KV
    cache, no special token ids (a random-init model that is never asked to generate)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        **shape,
        tie_word_embeddings=False,
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def random_llama(config: Any, device: torch.device, dtype: torch.dtype, seed: int) -> Any:
    """A random-init LlamaForCausalLM of `config` built on `device` in `dtype` directly (no fp32
    copy on the host): the default dtype is `dtype` while it is built, the global RNG seeded."""
    from transformers import LlamaForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(seed)
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model
