"""Random-init Llama models of named sizes, shared by every claim (no weights are downloaded).

``build_llama("d512-l8", vocab_size, seed)`` gives the same weights for the same seed on any
machine with the same torch and transformers: the model is built on the CPU under a forked RNG,
so the caller's random state is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class LlamaSize:
    """The shape of a Llama: width, depth, heads, MLP width and the longest sequence."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    kv_heads: int | None = None  # None: as many as `heads` (no grouped-query attention)


SIZES: dict[str, LlamaSize] = {
    # for CPU tests: seconds to build and to run a few steps
    "tiny": LlamaSize(hidden=64, layers=2, heads=4, intermediate=176, max_positions=256),
    # the claims' tiny Llama: d=512, 8 layers, 8 heads of 64, SwiGLU width ≈ 8/3·d
    "d512-l8": LlamaSize(hidden=512, layers=8, heads=8, intermediate=1376, max_positions=1024),
    # the same with an MLP width of 3·d: every width a multiple of 256 (POET-X's blocks of 256)
    "d512-l8-m1536": LlamaSize(
        hidden=512, layers=8, heads=8, intermediate=1536, max_positions=1024
    ),
}


def llama_config(size_name: str, vocab_size: int) -> LlamaConfig:
    """The transformers config of a named size (untied input and output embeddings, no KV
    cache: set ``config.use_cache = True`` to generate)."""
    try:
        size = SIZES[size_name]
    except KeyError:
        raise ValueError(f"unknown size {size_name!r}; known: {sorted(SIZES)}") from None
    if vocab_size < 2:
        raise ValueError("vocab_size must be at least 2")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads or size.heads,
        max_position_embeddings=size.max_positions,
        tie_word_embeddings=False,
        use_cache=False,  # training models: no key/value cache built on every forward
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_llama(size_name: str, vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM on the CPU in fp32, the same for the same seed."""
    config = llama_config(size_name, vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
