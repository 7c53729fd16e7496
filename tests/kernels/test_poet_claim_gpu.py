"""The POET-X claim's GPU-only phases at small sizes, so the lead's GPU run of the tests covers
the code the full profile runs (the 8B memory step, the layer timings with peaks)."""

from __future__ import annotations

import math

import pytest
import torch

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

SMALL_LLAMA = dict(
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=4096,
    rope_theta=500000.0,
)


def test_memory_phase_on_a_small_llama() -> None:
    from replication.claims.poet.measure import memory

    f = memory(torch.device("cuda"), seq_len=256, steps=2, shape=SMALL_LLAMA, block=128)
    assert f["mem_poetx_oom"] == 0 and f["mem_adamw_oom"] == 0
    poet, adamw = float(f["mem_poetx_peak_gb"]), float(f["mem_adamw_peak_gb"])
    assert poet > 0 and adamw > 0 and math.isfinite(float(f["mem_adamw_over_poetx_peak"]))
    # POET trains θ (fp32) instead of the linears (bf16): fewer trainable parameters
    assert 0 < int(f["mem_poetx_trainable_params"]) < int(f["mem_model_params"])


def test_speed_phase_on_a_small_layer() -> None:
    from replication.claims.poet.measure import PROFILE, speed

    p = PROFILE["full"]
    p = type(p)(**{**p.__dict__, "speed_tokens": 256, "speed_block": 128})
    ms, fns = speed(p, 256, 512, torch.device("cuda"))
    assert set(ms) == {"linear", "poetx_fast", "poetx_mem", "naive"}
    assert all(float(v) > 0 for v in ms.values())
    assert set(fns) == set(ms)
