"""FORGE (arXiv 2606.22932): the optimizer step fused into the weight-gradient GEMM.

The paper: folding AdamW into backward, one dW tile at a time in registers, is exact in full
precision, "more than halves the memory of an optimizer step" and is ~1.5x faster at the small
batches of fine-tuning. Measured on a stack of 8 × Linear(4096, 4096) (no bias, so every
parameter is a fused weight), AdamW (lr 1e-4, wd 0.01), against torch's fused AdamW with
materialised gradients and against PyTorch's optimizer-in-backward hook:

1. Exactness: fp32 weights, TF32 off, 20 steps at T=512; ForgeAdamW against
   torch.optim.AdamW(foreach=False): weights within 1e-5 relative, losses within 1e-3.
2. Memory: the step's peak allocation (forward + backward + update) above what lived before the
   forward, at T=512, in fp32 and under bf16 autocast: at least 50% below fused AdamW's and
   below the hook's.
3. Speed: backward + optimizer step (what FORGE changes; the forward is the same on every
   side), bf16 autocast on every side (bf16 GEMM operands, fp32 accumulation, fp32 master
   weights and AdamW states), at T ∈ {512, 2048, 8192}. Each optimizer runs two ways: eager,
   and captured in CUDA graphs that are replayed (`kernels.runtime.graphs.capture_step` with
   `split=True`: the forward in one graph, backward + step in the other; both optimizers built
   with `capturable=True`), so the host cannot pace it. The four arms are timed interleaved
   (A B C D, A B C D, ...), each step from an idle GPU, backward + step between a CUDA event
   after the forward and one after the step, medians. The judged speedup is FORGE's faster arm
   against torch fused AdamW's faster arm; whole steps (forward included) are reported beside
   it. T=512 is measured in 5 separate processes (the claim's own and 4 it spawns one after
   the other): the gating figure is the minimum over them, ≥ 1.25x (the median against the
   paper's 1.5x, reported); T=2048 and T=8192 (this process) must be ≥ 1.0x.
4. Reported, not judged: the fused kernel alone on one layer at T=512 and T=8192 — its fraction
   of the `copy_` bandwidth (bytes it must move over its time) and of the bf16 GEMM rate
   (2·T·N·K over its time), both ceilings measured in the same run; its time against cuBLAS's
   dW GEMM alone (issue 10's 0.85x goal at T=8192) and against cuBLAS dW + cast + fused AdamW;
   eager backward + step alone, the host's time to issue each step, the hook, and bf16 weights
   with stochastic rounding at T=512.

``smoke`` runs the exactness and autocast checks at toy sizes on the CPU (the kernel through
Triton's interpreter); with no GPU to measure memory or speed its verdict is "inconclusive".
Records before issue 10 judged backward + step of the eager arms in one process (the
``speedup_vs_fused_adamw_T512`` check); they keep their names.
"""

from __future__ import annotations

from replication.claims.spec import FULL, CheckSpec, ClaimSpec

SPEED_TOKENS = (512, 2048, 8192)  # the first is measured in SPEED_PROCESSES processes
SPEED_PROCESSES = 5
MEMORY_TOKENS = 512
KERNEL_TOKENS = (512, 8192)
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
    first, *rest = SPEED_TOKENS
    stem = f"speedup_vs_fused_T{first}"
    out = [
        CheckSpec(
            f"speedup_vs_fused_adamw_T{first}_min_of_{SPEED_PROCESSES}_processes",
            f"{stem}_min",
            ">=",
            1.25,
            profiles=_GPU,
            description="the slowest of the processes' judged speedups",
        ),
        CheckSpec(
            f"speedup_vs_fused_adamw_T{first}_median_paper_goal",
            f"{stem}_median",
            ">=",
            1.5,
            False,
            _GPU,
        ),
    ]
    for t in rest:
        out.append(
            CheckSpec(
                f"speedup_vs_fused_adamw_T{t}", f"speedup_vs_fused_T{t}", ">=", 1.0, profiles=_GPU
            )
        )
    return out


def _kernel_checks() -> list[CheckSpec]:
    small, large = KERNEL_TOKENS[0], KERNEL_TOKENS[-1]
    out = [
        CheckSpec(
            f"kernel_T{small}_frac_of_copy",
            f"kernel_T{small}_fused_frac_of_copy",
            ">=",
            0.85,
            False,
            _GPU,
            "bytes the fused kernel must move over its time, against copy_ in the run",
        ),
        CheckSpec(
            f"kernel_T{large}_time_vs_cublas_dw",
            f"kernel_T{large}_cublas_dw_over_fused",
            ">=",
            0.85,
            False,
            _GPU,
            "cuBLAS's dW GEMM alone over the fused kernel's time (dW GEMM + update)",
        ),
    ]
    for t in KERNEL_TOKENS:
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
        "AdamW's and below the optimizer-in-backward hook's; backward + step is at least 1.25x "
        "faster than torch fused AdamW's at T=512 in each of 5 processes and no slower at T=2048 "
        "and T=8192, each side eager or captured in a CUDA graph, whichever is faster (bf16 "
        "autocast, fp32 weights and states on every side)."
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
        "autocast (bf16 GEMM operands, fp32 weights and AdamW states). 'speed_backward_step' "
        "figures time backward + optimizer step (the judged unit), 'speed_step' figures the "
        "whole training step (forward included, reported), each from an idle GPU (CUDA events, "
        "median), for each optimizer eager ('_eager') and replayed from CUDA graphs ('_graph': "
        "the forward in one graph, backward + step in another; optimizers built with "
        "capturable=True; the replay is given the captured batch, as the eager arms' batch "
        "already lies on the GPU); the arms run interleaved. The judged speedup takes the "
        "faster arm of each side; at T=512 it is measured in 5 processes "
        "(speedup_vs_fused_T512 is their median, _per_process lists them, this process's "
        "first). 'host_issue' figures are the host's ms to issue a step: close to the step's "
        "own figure, the step is paced by "
        "the host. 'bf16_weights' figures compare FORGE with bf16 weights, fp32 states and "
        "stochastic rounding against torch fused AdamW on bf16 parameters, eager: reported, not "
        "judged. The stack's linears have no bias, so every parameter is fused. Fractions of "
        "bandwidth and of the GEMM rate are against copy_ and a bf16 GEMM measured in the same "
        "run (ceiling_ figures)."
    ),
    legacy_profiles={"h100": FULL},
)
