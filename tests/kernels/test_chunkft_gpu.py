"""ChunkFT on a CUDA device: the side-stream offload and prefetch change no number, the copies
are logged, and the claim's 7B memory path runs end to end on a small model (so a fault shows
here, in seconds, before the claim's long run). Skipped without CUDA."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernels.chunkft.optim import ChunkFT
from replication.models import build_llama

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _train(offload: bool, prefetch: bool, steps: int = 9):
    model = build_llama("tiny", 128, seed=5).cuda()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = ChunkFT(model, chunks=4, offload=offload, prefetch=prefetch, lr=1e-3)
    opt.record_transfers = True
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        ids = torch.randint(0, 128, (2, 33), generator=g).cuda()
        with torch.autocast("cuda", torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return model, opt


def test_offload_and_prefetch_change_no_number():
    with sdpa_kernel(SDPBackend.MATH):  # a deterministic attention backward
        a, opt_a = _train(offload=True, prefetch=True)
        b, _ = _train(offload=True, prefetch=False)
        c, _ = _train(offload=False, prefetch=False)
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p, r)
    d2h = [t for t in opt_a.transfers if t["direction"] == "d2h"]
    h2d = [t for t in opt_a.transfers if t["direction"] == "h2d"]
    assert len(d2h) == 9  # one copy out per switch (interval 1)
    assert len(h2d) == 9  # one prefetch per switch
    assert d2h[0]["bytes"] == opt_a.state_bytes(0)
    assert all(t["start"].elapsed_time(t["end"]) > 0 for t in opt_a.transfers)
    assert opt_a._host_flat.is_pinned()


def test_memory_path_runs_on_a_small_model():
    from transformers import LlamaConfig

    from replication.claims.chunkft import measure

    config = LlamaConfig(
        vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        tie_word_embeddings=False, use_cache=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    p = measure.Profile("tiny", 64, 9, 1, "tiny", 16, 2, 1, (0,), 1e-3, 1, True, 1_000_000, 4)
    figures = measure.memory_7b(p, torch.device("cuda"), config=config, seq=128)
    assert figures["mem_chunks"] >= 20
    assert 0 < figures["mem_chunkft_cycle_peak_gb"] < figures["mem_adamw_peak_gb"]
    assert figures["mem_adamw_outcome"] == "fits"
    for k in ("offload_h2d_gbps", "offload_d2h_gbps"):
        assert math.isfinite(figures[k]) and figures[k] > 0, k
    assert 0.0 <= figures["offload_hidden_fraction"] <= 1.0
    assert figures["offload_h2d_bytes"] > 0 and figures["offload_d2h_bytes"] > 0
