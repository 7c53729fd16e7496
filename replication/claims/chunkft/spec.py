"""ChunkFT (arXiv 2605.21177): full fine-tuning through a moving window of the model.

The paper: "full fine-tuning of a 7B model with 1K input in 13.72 GB", by training one byte
window (chunk) of the model at a time, forming the weight gradient of the active slice only and
keeping the other chunks' optimizer states off the GPU. Measured here, in one process:

1. Memory: a Llama-2-7B-shaped model (hidden 4096, 32 layers, MLP 11008, vocab 32000, random
   init, bf16 weights), seq 1024, batch 1, activation checkpointing (non-reentrant): peak
   allocated memory over one whole cycle of ChunkFT (every chunk trained once) ≤ 15.8 GB (the
   paper's 13.72 GB + 15%); the standard mixed-precision AdamW step (fp32 weights, bf16
   autocast, fused AdamW) on the same model in the same run, reported with the ratio (an OOM is
   reported as such).
2. Offload: bytes moved per chunk switch, the achieved device<->host bandwidth against pinned
   copies measured in the same run, and the fraction of the transfer time hidden behind compute.
3. Exactness (fp32, TF32 off, tiny Llama): one chunk is bit-identical to the same kernels
   unchunked, and its weight updates are as close to ``torch.optim.AdamW``'s (autograd's
   gradients, torch's single-tensor step: the reference the paper's "full fine-tuning" means,
   and code that is not ours) as torch's own fp32 run is: both are measured against torch
   AdamW run in float64, and ours may be off by at most 2x torch's fp32 error + 1e-6
   (KERNELS.md's rule: a bound ratio <= 1; an update is a small difference of fp32 weights, so
   two correct fp32 runs differ in it by far more than 1e-5 relative); with four chunks every
   slice gradient equals autograd's within 1e-5 relative.
4. Quality: the d512-l8 Llama on Shakespeare, ChunkFT with 4 chunks after 4·S steps against
   AdamW after S steps (equal updates per parameter), eval loss ratio ≤ 1.05, over 2 seeds; the
   spread is the standard error of the mean ratio (the judge's one rule).

``smoke`` runs 3 and 4 at toy sizes on the CPU (kernels through Triton's interpreter).
"""

from __future__ import annotations

from replication.claims.spec import FULL, CheckSpec, ClaimSpec

_GPU = (FULL,)

SPEC = ClaimSpec(
    claim_id="chunkft",
    paper="ChunkFT",
    arxiv="2605.21177",
    statement=(
        "ChunkFT (one byte window of the model trained at a time, slice-only weight gradients, "
        "other windows' AdamW states in pinned host memory) fine-tunes a Llama-2-7B-shaped model "
        "(bf16, seq 1024, batch 1) with peak GPU memory over a whole chunk cycle <= 15.8 GB "
        "(13.72 GB + 15%); with one chunk it is bit-identical to the same kernels unchunked and "
        "its updates are within 2x torch.optim.AdamW's own fp32 error (+ 1e-6) of torch AdamW "
        "run in float64, with four its slice gradients match autograd within 1e-5; and with 4 "
        "chunks after 4S steps "
        "its eval loss on Shakespeare is within 5% of AdamW's after S steps (2 seeds)."
    ),
    scale=(
        "memory: the paper's 7B / 1K-token setting on a random-init Llama-2-7B shape, one chunk "
        "cycle (not a fine-tuning run; the paper's chunk count is not published: ours is set by "
        "a 0.25 GB byte budget per chunk); quality: a d512-l8 Llama trained from scratch on "
        "Shakespeare for a few hundred steps, 2 seeds (the paper fine-tunes Llama-3 8B/70B on "
        "instruction and math sets and reports benchmark scores, not measured here)"
    ),
    profiles=("smoke", FULL),
    checks=(
        CheckSpec(
            "exact_one_chunk_bitwise",
            "exact_one_chunk_max_abs_diff",
            "<=",
            0.0,
            description="max |W_chunkft - W_unchunked| after the same steps, one chunk",
        ),
        CheckSpec(
            "exact_one_chunk_vs_torch_adamw",
            "exact_one_chunk_vs_torch_adamw_bound_ratio",
            "<=",
            1.0,
            description=(
                "worst norm-wise error of a weight's update against torch.optim.AdamW run in "
                "float64, over 2x torch AdamW's own fp32 error of it + 1e-6 (KERNELS.md's "
                "rule): at most 1"
            ),
        ),
        CheckSpec(
            "exact_four_chunks_slice_grad_rel_err",
            "exact_four_chunks_slice_grad_rel_err",
            "<=",
            1e-5,
            description="worst norm-wise error of a slice gradient against autograd's (fp32)",
        ),
        CheckSpec(
            "quality_loss_ratio",
            "quality_loss_ratio",
            "<=",
            1.05,
            spread="quality_loss_ratio_sem",
            description="mean over seeds of eval loss (ChunkFT, 4S steps) / (AdamW, S steps)",
        ),
        CheckSpec(
            "mem_7b_cycle_peak_gb",
            "mem_chunkft_cycle_peak_gb",
            "<=",
            15.8,
            profiles=_GPU,
            description="max_memory_allocated over one whole chunk cycle, 1e9 bytes",
        ),
        CheckSpec(
            "mem_7b_cycle_peak_gb_paper",
            "mem_chunkft_cycle_peak_gb",
            "<=",
            13.72,
            gating=False,
            profiles=_GPU,
        ),
        CheckSpec(
            "mem_adamw_over_chunkft",
            "mem_adamw_over_chunkft",
            ">=",
            2.0,
            gating=False,
            profiles=_GPU,
            description="standard mixed-precision AdamW step's peak over ChunkFT's",
        ),
        CheckSpec(
            "offload_h2d_frac_of_pinned",
            "offload_h2d_frac_of_pinned",
            ">=",
            0.5,
            gating=False,
            profiles=_GPU,
        ),
        CheckSpec(
            "offload_d2h_frac_of_pinned",
            "offload_d2h_frac_of_pinned",
            ">=",
            0.5,
            gating=False,
            profiles=_GPU,
        ),
        CheckSpec(
            "offload_hidden_fraction",
            "offload_hidden_fraction",
            ">=",
            0.5,
            gating=False,
            profiles=_GPU,
            description="1 - (step time with offload - without) / transfer time per switch",
        ),
    ),
    notes=(
        "Kernels: slice weight-gradient GEMMs from strided views (fp32 accumulation), a "
        "one-hot GEMM for the embedding slice, AdamW per slice (FORGE's rule); offload on a "
        "side CUDA stream with the next chunk prefetched."
    ),
)
