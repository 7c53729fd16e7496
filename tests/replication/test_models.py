"""Named random-init Llama sizes shared by the claims."""

from __future__ import annotations

import math

import pytest
import torch

from replication.models import SIZES, build_llama, llama_config


def _param_count(vocab: int, d: int, layers: int, inter: int) -> int:
    """Untied Llama: embeddings in and out, 4 attention and 3 MLP matrices and 2 norms a layer,
    one final norm."""
    return 2 * vocab * d + layers * (4 * d * d + 3 * d * inter + 2 * d) + d


def test_same_seed_same_weights_and_caller_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    a = build_llama("tiny", 300, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_llama("tiny", 300, seed=5)
    c = build_llama("tiny", 300, seed=6)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_named_sizes_have_their_shape(name: str) -> None:
    size = SIZES[name]
    cfg = llama_config(name, 16_000)
    assert (cfg.hidden_size, cfg.num_hidden_layers) == (size.hidden, size.layers)
    assert cfg.tie_word_embeddings is False
    if name == "d512-l8":
        assert (size.hidden, size.layers, size.hidden // size.heads) == (512, 8, 64)
        assert size.max_positions >= 256


def test_tiny_model_parameter_count_and_initial_loss() -> None:
    vocab = 257
    model = build_llama("tiny", vocab, seed=0)
    size = SIZES["tiny"]
    n = sum(p.numel() for p in model.parameters())
    assert n == _param_count(vocab, size.hidden, size.layers, size.intermediate)
    assert model.model.embed_tokens.weight.data_ptr() != model.lm_head.weight.data_ptr()
    x = torch.randint(0, vocab, (2, 48), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=x, labels=x).loss
    assert abs(float(loss.detach()) - math.log(vocab)) < 0.5  # near-uniform predictions at init
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_d512_l8_parameter_count() -> None:
    model = build_llama("d512-l8", 16_000, seed=0)
    assert sum(p.numel() for p in model.parameters()) == _param_count(16_000, 512, 8, 1376)


def test_unknown_size_and_bad_vocab_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown size"):
        build_llama("huge", 100, seed=0)
    with pytest.raises(ValueError, match="vocab"):
        llama_config("tiny", 1)
