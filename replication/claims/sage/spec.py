"""SAGE (arXiv 2604.07663): a fused SAGE step, its optimizer-state saving, its quality.

Three measurements, one run:

1. Kernel speed: the SAGE step (column statistic, scale, fused apply) on a 32000×2048 embedding
   and a 4096×4096 matrix in fp32, against torch's fused AdamW, timed in the same process.
   Targets: SAGE moves its 24 B/element at ≥ 85% of the run's ``copy_`` ceiling (a 1 GiB fp32
   ``copy_`` measured in the same run, ``kernels.runtime.ceilings``), and takes less time than
   fused AdamW. A ``copy_`` of the same tensor is reported beside it, not judged: a tensor that
   partly stays in L2 copies faster or slower than the device can stream.
2. Optimizer state: the bytes of the state tensors after one step on the d512-l8 Llama.
   Target: SAGE-hybrid ≤ 0.55 × SinkGD-hybrid (SAGE keeps m and an O(d) vector where AdamW keeps
   m and v).
3. Quality: the d512-l8 Llama (seq 256) trained on the Shakespeare corpus for the same number of
   steps with each hybrid (SinkGD on the matrices, SAGE / AdamW / Lion on embeddings and
   vectors), over 3 seeds. The gap SAGE-hybrid minus each other hybrid is taken per seed; its
   mean is judged (≤ 0.01 nats) and the mean's standard error is the spread (the judge's one
   rule, ``judge.mean_and_sem``): when mean ± standard error straddles 0.01 the seeds, not the
   optimizer, would decide, and the verdict is inconclusive. Plain AdamW is reported, not judged.
"""

from __future__ import annotations

from replication.claims.spec import FULL, SMOKE, CheckSpec, ClaimSpec

OPTIMIZERS = ("sage_hybrid", "sinkgd_hybrid", "lion_hybrid", "adamw")
SPEED_SHAPES = {SMOKE: ((96, 80), (64, 64)), FULL: ((32000, 2048), (4096, 4096))}
SEEDS = (0, 1, 2)
QUALITY_STEPS = 300  # per seed and optimizer (the H100 runs did 400 with 2 seeds)
# the judged gaps: (other optimizer, gating)
QUALITY_GAPS = (("sinkgd_hybrid", True), ("lion_hybrid", True), ("adamw", False))


def speed_tag(shape: tuple[int, int], dtype: str = "fp32") -> str:
    return f"{shape[0]}x{shape[1]}_{dtype}"


def _speed_checks() -> list[CheckSpec]:
    out = []
    for profile, shapes in SPEED_SHAPES.items():
        for shape in shapes:
            tag = speed_tag(shape)
            out.append(
                CheckSpec(
                    f"sage_step_frac_of_copy_ceiling_{tag}",
                    f"speed_{tag}_sage_frac_of_copy_ceiling",
                    ">=",
                    0.85,
                    profiles=(profile,),
                    description="bytes the step must move / its time, over the run's 1 GiB copy_",
                )
            )
            out.append(
                CheckSpec(
                    f"adamw_fused_ms_over_sage_ms_{tag}",
                    f"speed_{tag}_adamw_ms_over_sage_ms",
                    ">",
                    1.0,
                    profiles=(profile,),
                )
            )
    return out


def gap_figure(other: str) -> str:
    return f"quality_gap_sage_hybrid_minus_{other}"


SPEC = ClaimSpec(
    claim_id="sage",
    paper="SAGE",
    arxiv="2604.07663",
    statement=(
        "SAGE's fused step runs at >= 85% of copy bandwidth and faster than torch's fused AdamW; "
        "a SAGE-hybrid (SAGE on embeddings and vectors, SinkGD on matrices) holds <= 0.55x the "
        "optimizer state of the SinkGD-hybrid (AdamW on embeddings and vectors); and a tiny "
        "Llama (d=512, 8 layers, seq 256) trained on Shakespeare reaches a mean eval loss within "
        "0.01 nats of the SinkGD-hybrid and of a Lion-hybrid, or lower, over 3 seeds."
    ),
    scale=(
        f"speed on 32000x2048 and 4096x4096 fp32 tensors; quality on a d512-l8 Llama, seq 256, "
        f"batch 32, {QUALITY_STEPS} steps a run, {len(SEEDS)} seeds, Shakespeare (~1.6M tokens); "
        f"the paper trains 60M-1.3B Llamas for 50k steps on the Pile"
    ),
    profiles=(SMOKE, FULL),
    checks=(
        *_speed_checks(),
        CheckSpec(
            "state_bytes_sage_hybrid_over_sinkgd_hybrid",
            "state_bytes_sage_over_sinkgd_hybrid",
            "<=",
            0.55,
        ),
        *(
            CheckSpec(
                f"eval_loss_sage_hybrid_minus_{other}",
                f"{gap_figure(other)}_mean",
                "<=",
                0.01,
                gating=gating,
                spread=f"{gap_figure(other)}_sem",
                description="mean over seeds of the per-seed gap; spread: its standard error",
            )
            for other, gating in QUALITY_GAPS
        ),
    ),
    notes=(
        "SAGE step, fused AdamW and copy_ timed in one process (fp32; bf16 on the first shape, "
        "reported); the bandwidth gate is against the run's 1 GiB copy_ ceiling (ceiling_ "
        "figures), the fraction of a copy_ of the same tensor reported beside it; the SAGE "
        "step is the optimizer's (bound launches: one plan per parameter), as fused AdamW's is "
        "`AdamW.step`; 'general' is the unbound `sage_step_`; host_issue "
        "figures are the host's µs to issue one step with the GPU idle; state bytes summed over "
        "optimizer.state after one step; quality: warm-up then cosine to 10%, bf16 autocast on "
        "CUDA, eval on fixed batches of the held-out plays; each quality check's spread is the "
        "standard error of the mean of the per-seed gaps."
    ),
    legacy_profiles={"h100": FULL},
)
