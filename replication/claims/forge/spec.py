"""FORGE (arXiv 2606.22932): the optimizer step fused into the weight-gradient GEMM.

The paper: folding AdamW into backward, one dW tile at a time in registers, is exact in full
precision, "more than halves the memory of an optimizer step" and is ~1.5x faster at the small
batches of fine-tuning. Measured on a stack of 8 × Linear(4096, 4096) (no bias, so every
parameter is a fused weight), AdamW (lr 1e-4, wd 0.01), against torch's fused AdamW with
materialised gradients and against PyTorch's optimizer-in-backward hook, in one process:

1. Exactness: fp32 weights, TF32 off, 20 steps at T=512; ForgeAdamW against
   torch.optim.AdamW(foreach=False): weights within 1e-5 relative, losses within 1e-3.
2. Memory: the step's peak allocation (forward + backward + update) above what lived before the
   forward, at T=512, in fp32 and under bf16 autocast: at least 50% below fused AdamW's and
   below the hook's.
3. Speed: backward + step, median of CUDA-event timings, at T ∈ {512, 2048, 8192}, bf16 autocast
   on every side (bf16 GEMM operands, fp32 accumulation, fp32 master weights and AdamW states).
   Target: ≥ 1.25x fused AdamW at T=512 (1.5x, the paper's, reported). Also reported: the fused
   kernel alone on one layer (fraction of the copy_ bandwidth measured in the same run, time
   against cuBLAS dW + cast + fused AdamW), the host's time to issue each backward + step, and
   bf16 weights with stochastic rounding at T=512.

``smoke`` runs the exactness and autocast checks at toy sizes on the CPU (the kernel through
Triton's interpreter); with no GPU to measure memory or speed its verdict is "inconclusive".
"""

from __future__ import annotations

from replication.claims.spec import FULL, CheckSpec, ClaimSpec

SPEED_TOKENS = (512, 2048, 8192)
MEMORY_TOKENS = 512
_GPU = (FULL,)


def _memory_checks() -> list[CheckSpec]:
    out = []
    for label in ("fp32", "bf16_autocast"):
        stem = f"mem_{label}_T{MEMORY_TOKENS}"
        out.append(
            CheckSpec(
                f"{stem}_reduction_vs_fused", f"{stem}_reduction_vs_fused", ">=", 0.5, profiles=_GPU
            )
        )
        out.append(
            CheckSpec(f"{stem}_forge_over_hook", f"{stem}_forge_over_hook", "<", 1.0, profiles=_GPU)
        )
    return out


def _speed_checks() -> list[CheckSpec]:
    out = []
    for t in SPEED_TOKENS:
        figure = f"speedup_vs_fused_T{t}"
        if t == 512:
            out.append(CheckSpec("speedup_vs_fused_adamw_T512", figure, ">=", 1.25, profiles=_GPU))
            out.append(
                CheckSpec("speedup_vs_fused_adamw_T512_paper_goal", figure, ">=", 1.5, False, _GPU)
            )
        else:
            out.append(CheckSpec(f"speedup_vs_fused_adamw_T{t}", figure, ">=", 1.0, False, _GPU))
    return out


def _kernel_checks() -> list[CheckSpec]:
    out = []
    for t in SPEED_TOKENS:
        if t == 512:
            out.append(
                CheckSpec(
                    "kernel_T512_frac_of_copy",
                    "kernel_T512_fused_frac_of_copy",
                    ">=",
                    0.85,
                    False,
                    _GPU,
                    "bytes the fused kernel must move over its time, against copy_ in the run",
                )
            )
        figure = f"kernel_T{t}_unfused_over_fused"
        out.append(
            CheckSpec(f"kernel_T{t}_unfused_over_fused_time", figure, ">=", 0.9, False, _GPU)
        )
    return out


SPEC = ClaimSpec(
    claim_id="forge",
    paper="FORGE",
    arxiv="2606.22932",
    statement=(
        "FORGE's fused AdamW (update applied to each weight-gradient tile in registers, no "
        "gradient tensor) matches torch AdamW within 1e-5 relative in fp32 over 20 steps; on 8 x "
        "Linear(4096, 4096) at T=512 its step's peak memory is at least 50% below torch fused "
        "AdamW's and below the optimizer-in-backward hook's, and backward+step is at least 1.25x "
        "faster than torch fused AdamW (bf16 autocast, fp32 weights and states on every side)."
    ),
    scale=(
        "8 x Linear(4096, 4096) without bias, T in {512, 2048, 8192} tokens a step, one GPU; "
        "the paper fine-tunes Llama-scale models: the stack stands for their linear layers"
    ),
    profiles=("smoke", FULL),
    checks=(
        CheckSpec(
            "exact_fp32_weight_rel_err_after_steps", "exact_fp32_weight_rel_err_max", "<=", 1e-5
        ),
        CheckSpec(
            "exact_fp32_loss_rel_diff_over_steps", "exact_fp32_loss_rel_diff_max", "<=", 1e-3
        ),
        CheckSpec(
            "autocast_bf16_fused_step_rel_err_vs_reference",
            "autocast_bf16_step_rel_err_vs_reference",
            "<=",
            1e-5,
        ),
        *_memory_checks(),
        *_speed_checks(),
        *_kernel_checks(),
    ),
    notes=(
        "Speed and memory on every side use the same model, batch and AdamW; speed is bf16 "
        "autocast (bf16 GEMM operands, fp32 weights and AdamW states), timed from the start of "
        "backward to the end of the optimizer step (CUDA events, median). 'bf16_weights' "
        "figures compare FORGE with bf16 weights, fp32 states and stochastic rounding against "
        "torch fused AdamW on bf16 parameters (bf16 states): reported, not judged. The stack's "
        "linears have no bias, so every parameter is fused. 'host_issue' figures are the host's "
        "ms to issue backward + step: where one is close to its GPU figure, that method's step "
        "is paced by the host (Python autograd and launches), not by the GPU. Fractions of "
        "bandwidth are against copy_ measured in the same run (ceiling_ figures)."
    ),
    legacy_profiles={"h100": FULL},
)
