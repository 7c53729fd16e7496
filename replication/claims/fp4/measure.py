"""The FP4 claim's figures (no verdicts): training quality of three arms, kernel speeds against
ceilings measured in the same run, and the cosine of a captured activation with its FP4 forms.

``smoke`` runs everything at toy sizes on the CPU (the training through the reference path,
the kernel timings through Triton's interpreter) in well under a minute; ``full`` needs CUDA.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from kernels.runtime import timing
from kernels.runtime.ceilings import Ceilings, measure_ceilings
from replication.claims import base, common
from replication.claims.judge import mean_and_sem

from .spec import ARMS

Figures = dict[str, float | int | str]


@dataclass(frozen=True)
class Profile(common.TrainingProfile):
    """What one profile runs."""

    lr: float
    quant_shape: tuple[int, int]  # (tokens, features) of the quantizer timings
    gemm_n: int  # n of the run's bf16 GEMM ceiling and of the FP8 GEMM set against it
    linear_shape: tuple[int, int, int]  # (M, K, N) of the layer and dW timings
    total_budget_s: float | None = None  # fit the steps (at most `steps`) to this wall time


PROFILES = {
    "smoke": Profile(
        model_size="tiny",
        seq_len=32,
        batch_size=2,
        steps=2,
        warmup_steps=1,
        eval_batches=1,
        seeds=(0, 1, 2),
        lr=3e-3,
        quant_shape=(32, 128),
        gemm_n=64,
        linear_shape=(32, 32, 32),
    ),
    # ≤ 150 s on one H200: 9 runs of up to 300 steps (the FP4 arms are host-paced, ~30 ms a
    # step expected); a calibration fits the steps to what is left of total_budget_s
    "full": Profile(
        model_size="d512-l8",
        seq_len=256,
        batch_size=32,
        steps=300,
        warmup_steps=30,
        eval_batches=8,
        seeds=(0, 1, 2),
        lr=1e-3,
        quant_shape=(8192, 4096),
        gemm_n=8192,
        linear_shape=(8192, 4096, 4096),
        total_budget_s=135.0,
    ),
}

BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1
CLIP_NORM = 1.0


def arm_config(arm: str):
    """The FP4Config of an arm (None for bf16)."""
    from kernels.fp4 import FP4_DIRECT, FP4_FULL

    return {"bf16": None, "fp4_direct": FP4_DIRECT, "fp4_full": FP4_FULL}[arm]


def _train(
    model: torch.nn.Module, prof: Profile, steps: int, corpus: Any, seed: int, device: torch.device
) -> tuple[float, float]:
    """`steps` AdamW steps (warm-up then cosine); (last loss, seconds of all but the first two
    steps, which compile and tune)."""
    from replication.data import train_batches

    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(
        model.parameters(), lr=prof.lr, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=cuda or None
    )
    warmup = max(1, min(prof.warmup_steps, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, common.warmup_cosine(warmup, steps))
    batches = train_batches(corpus.train, prof.batch_size, prof.seq_len, seed=1000 + seed)
    loss, seconds = common.train_loop(
        model, opt, sched, batches, steps, device, CLIP_NORM, timed_from=min(2, steps - 1)
    )
    return float(loss), seconds


def build_arm(arm: str, seed: int, prof: Profile, vocab_size: int, device: torch.device):
    """The model of an arm: the seed's initialisation, FP4 layers patched in for FP4 arms
    (kernels on the GPU; the reference path on the CPU, where the interpreter would take
    minutes a step)."""
    from kernels.fp4 import patch
    from replication.models import build_llama

    model = build_llama(prof.model_size, vocab_size, seed).to(device)
    cfg = arm_config(arm)
    if cfg is not None:
        patch(model, cfg, use_kernels=None if device.type == "cuda" else False)
    return model


def train_arm(
    arm: str, seed: int, prof: Profile, steps: int, corpus: Any, device: torch.device
) -> tuple[dict[str, float], torch.nn.Module]:
    """Train one arm with one seed; (its figures, the trained model)."""
    from kernels.fp4 import unpatch
    from replication.data import eval_batches

    model = build_arm(arm, seed, prof, corpus.vocab_size, device)
    loss, seconds = _train(model, prof, steps, corpus, seed, device)
    evals = eval_batches(corpus.eval, prof.batch_size, prof.seq_len, prof.eval_batches)
    out = {
        "final_train_loss": loss,
        "eval_loss": common.eval_loss(model, evals, device),
        "ms_per_step": seconds * 1e3 / max(1, steps - 2),
    }
    if arm_config(arm) is not None:
        unpatch(model)
        out["eval_loss_unpatched"] = common.eval_loss(model, evals, device)
    return out, model


def calibrate_steps(
    prof: Profile, corpus: Any, device: torch.device, deadline: float
) -> tuple[int, Figures]:
    """Steps a run can take so that 3 arms × the seeds end by `deadline` (perf_counter): ms a
    step of each arm over 8 steps of a throw-away seed (which also compiles and tunes every kernel),
    plus ~1.5 s a run for building, evaluating twice and freeing. At most prof.steps, at least
    30, a multiple of 10."""
    figures: Figures = {}
    per_run_ms = 0.0
    for arm in ARMS:
        model = build_arm(arm, 99, prof, corpus.vocab_size, device)
        _, seconds = _train(model, prof, 8, corpus, 99, device)
        ms = seconds * 1e3 / 6
        figures[f"calibration_{arm}_ms_per_step"] = ms
        per_run_ms += ms
        del model
    runs = len(prof.seeds)
    left_s = deadline - time.perf_counter()
    steps = int((left_s * 1e3 / runs - 3 * 1500) / per_run_ms) // 10 * 10
    steps = min(prof.steps, max(30, steps))
    figures["calibration_left_s"] = left_s
    return steps, figures


def quality_figures(results: dict[str, list[dict[str, float]]]) -> Figures:
    """Per-arm means and the seed-paired ratio and difference the checks judge, each with its
    standard error (the judge's one spread rule)."""
    out: Figures = {}
    for arm, runs in results.items():
        for key in runs[0]:
            vals = [r[key] for r in runs]
            out[f"quality_{arm}_{key}_mean"] = statistics.fmean(vals)
            for i, v in enumerate(vals):
                out[f"quality_{arm}_{key}_seed{i}"] = v
    full = [r["eval_loss"] for r in results["fp4_full"]]
    bf16 = [r["eval_loss"] for r in results["bf16"]]
    direct = [r["eval_loss"] for r in results["fp4_direct"]]
    ratio = [f / b for f, b in zip(full, bf16, strict=True)]
    diff = [f - d for f, d in zip(full, direct, strict=True)]
    mean, sem = mean_and_sem(ratio)
    out["quality_fp4_full_over_bf16_mean"] = mean
    out["quality_fp4_full_over_bf16_sem"] = sem
    out["quality_fp4_direct_over_bf16_mean"] = statistics.fmean(
        d / b for d, b in zip(direct, bf16, strict=True)
    )
    mean, sem = mean_and_sem(diff)
    out["quality_fp4_full_minus_direct_mean"] = mean
    out["quality_fp4_full_minus_direct_sem"] = sem
    return out


def capture_cosines(model: torch.nn.Module, ids: torch.Tensor, device: torch.device) -> Figures:
    """Input of the middle block's down_proj (the SwiGLU product, where outliers live) on one
    eval batch, and its cosine with FP4 direct, FP4 after clamping, and FP4 after clamping plus
    the residual (the layer's own α = 0.99 per-token bounds)."""
    from kernels.fp4 import fake_quantize, outlier_clamp

    layer = model.model.layers[len(model.model.layers) // 2].mlp.down_proj
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        with (
            torch.no_grad(),
            torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
        ):
            model(ids.to(device))
    finally:
        hook.remove()
    x = captured[0].reshape(-1, captured[0].shape[-1])
    xf = x.float().flatten()
    direct = fake_quantize(x)
    clamped, residual = outlier_clamp(x, 0.99, per_row=True)
    q_clamped = fake_quantize(clamped)

    def cos(t: torch.Tensor) -> float:
        return float(F.cosine_similarity(t.float().flatten(), xf, dim=0))

    kurt = ((xf - xf.mean()) ** 4).mean() / xf.var() ** 2
    out: Figures = {
        "cosine_direct": cos(direct),
        "cosine_clamped": cos(q_clamped),
        "cosine_compensated": cos(q_clamped.float() + residual.float()),
        "cosine_activation_kurtosis": float(kurt),
        "cosine_activation_absmax_over_rms": float(xf.abs().max() / xf.pow(2).mean().sqrt()),
        "cosine_residual_nonzero_frac": float((residual != 0).float().mean()),
    }
    out["cosine_compensated_minus_direct"] = out["cosine_compensated"] - out["cosine_direct"]
    out["cosine_clamped_minus_direct"] = out["cosine_clamped"] - out["cosine_direct"]
    return out


def _guarded(name: str, fn: Callable[[], Figures]) -> Figures:
    """Run one reported measurement; an exception becomes an `error` figure (printed in full)
    rather than losing the run's other figures."""
    try:
        return fn()
    except Exception as exc:  # reported, and the traceback printed
        traceback.print_exc(file=sys.stderr)
        return {f"{name}_error": f"{type(exc).__name__}: {exc}"[:300]}


def speed_quantizer(prof: Profile, device: torch.device, ceilings: Ceilings) -> Figures:
    """The quantizer on (tokens, features) bf16, token-wise: time, bytes it must move and the
    fraction of copy_; the eager PyTorch transcription beside it; the quantile bounds alone."""
    from kernels.fp4 import reference as R
    from kernels.fp4.launch import quantile_bounds, quantize_rows

    m, k = prof.quant_shape
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(m, k, generator=gen).to(device=device, dtype=torch.bfloat16)
    lo, hi = quantile_bounds(x, 0.99)
    n = m * k
    cases = {
        # name: (call, bytes it must move)
        "dequant": (lambda: quantize_rows(x, out="dequant"), n * 4 + m * 4),
        "e4m3": (lambda: quantize_rows(x, out="e4m3"), n * 3 + m * 4),
        "packed": (lambda: quantize_rows(x, out="packed"), n * 2.5 + m * 4),
        "e4m3_clamp_residual": (
            lambda: quantize_rows(x, out="e4m3", lo=lo, hi=hi, residual=True),
            n * 5 + m * 12,
        ),
    }
    out: Figures = {}
    for name, (fn, nbytes) in cases.items():
        ms = timing.median_ms(fn, device)
        out[f"speed_quant_{name}_ms"] = ms
        out[f"speed_quant_{name}_frac_of_copy"] = ceilings.frac_of_copy(nbytes, ms)
        out[f"speed_quant_{name}_tbps"] = nbytes / (ms * 1e-3) / 1e12
    eager_ms = timing.median_ms(lambda: R.fake_quantize_ref(x), device)
    out["speed_quant_eager_reference_ms"] = eager_ms
    out["speed_quant_dequant_speedup_vs_eager"] = eager_ms / out["speed_quant_dequant_ms"]
    out["speed_quantile_bounds_ms"] = timing.median_ms(lambda: quantile_bounds(x, 0.99), device)
    return out


def fp8_gemm_tflops(device: torch.device, n: int, gen: torch.Generator) -> float:
    """torch._scaled_mm on n×n e4m3 operands with row-wise scales, bf16 out: TFLOP/s."""
    a8 = torch.randn(n, n, generator=gen).to(device).to(torch.float8_e4m3fn)
    b8 = torch.randn(n, n, generator=gen).to(device).to(torch.float8_e4m3fn)
    sa = torch.ones(n, 1, device=device)
    sb = torch.ones(1, n, device=device)
    ms = timing.median_ms(
        lambda: torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16),
        device,
    )
    return 2 * n**3 / (ms * 1e-3) / 1e12


def speed_gemms(prof: Profile, device: torch.device, ceilings: Ceilings) -> Figures:
    """FP8 (e4m3, row-wise scales) n³ GEMM against the run's bf16 GEMM ceiling (the same n,
    measured once by ``measure_ceilings``, not again here); the FP4 layer's forward + backward
    against F.linear's; the fused DGE dW against cuBLAS dW + a separate DGE pass."""
    from kernels.fp4 import FP4_FULL, dge_derivative, dge_weight_grad, fp4_linear

    out: Figures = {}
    n = ceilings.gemm_n
    gen = torch.Generator().manual_seed(12)
    out["speed_fp8_gemm_tflops"] = fp8_gemm_tflops(device, n, gen)
    out["speed_bf16_gemm_tflops"] = ceilings.gemm_bf16_tflops
    out["speed_fp8_over_bf16_gemm"] = out["speed_fp8_gemm_tflops"] / out["speed_bf16_gemm_tflops"]
    out["speed_gemm_n"] = n

    m, k, nn = prof.linear_shape
    dt = torch.bfloat16 if device.type == "cuda" else torch.float32
    x = torch.randn(m, k, generator=gen).to(device=device, dtype=dt).requires_grad_()
    w = (torch.randn(nn, k, generator=gen) * k**-0.5).to(device=device, dtype=dt).requires_grad_()
    dy = torch.randn(m, nn, generator=gen).to(device=device, dtype=dt)

    def fp4_step() -> None:
        torch.autograd.grad(fp4_linear(x, w, None, FP4_FULL), (x, w), dy)

    def bf16_step() -> None:
        torch.autograd.grad(F.linear(x, w), (x, w), dy)

    out["speed_layer_fp4_full_fwd_bwd_ms"] = timing.median_ms(fp4_step, device)
    out["speed_layer_bf16_fwd_bwd_ms"] = timing.median_ms(bf16_step, device)
    out["speed_layer_fp4_over_bf16_time"] = (
        out["speed_layer_fp4_full_fwd_bwd_ms"] / out["speed_layer_bf16_fwd_bwd_ms"]
    )
    xd, wd = x.detach(), w.detach()
    sf = torch.exp2(torch.randint(0, 4, (k,), generator=gen).float()).to(device)
    fused = timing.median_ms(lambda: dge_weight_grad(dy, xd, wd, sf), device)
    unfused = timing.median_ms(
        lambda: (dy.t() @ xd) * dge_derivative(wd * sf.to(dt)[None, :]), device
    )
    out["speed_dge_dw_fused_ms"] = fused
    out["speed_dge_dw_unfused_ms"] = unfused
    out["speed_dge_dw_fused_tflops"] = 2 * m * k * nn / (fused * 1e-3) / 1e12
    out["speed_dge_dw_unfused_over_fused"] = unfused / fused
    out["speed_layer_shape"] = f"{m}x{k}x{nn}"
    return out


def measure(profile: str) -> Figures:
    """The FP4 claim's figures at `profile` (``smoke`` or ``full``)."""
    device = common.claim_device(profile, PROFILES)
    prof = PROFILES[profile]
    cuda = device.type == "cuda"
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)  # toy sizes: threads only contend (restored at the end)
    try:
        return _measure(prof, device)
    finally:
        torch.set_num_threads(threads)


def _measure(prof: Profile, device: torch.device) -> Figures:
    cuda = device.type == "cuda"
    started = time.perf_counter()
    figures: Figures = common.environment_figures(device)
    figures.update(
        {
            "setup_model": prof.model_size,
            "setup_seq_len": prof.seq_len,
            "setup_batch_size": prof.batch_size,
            "setup_max_steps": prof.steps,
            "setup_seeds": len(prof.seeds),
            "setup_lr": prof.lr,
        }
    )

    base.phase("ceilings")
    t0 = time.perf_counter()
    ceilings = measure_ceilings(device, gemm_n=prof.gemm_n)
    figures.update(ceilings.figures())
    base.phase("kernel_speed")
    figures.update(_guarded("speed_quant", lambda: speed_quantizer(prof, device, ceilings)))
    figures.update(_guarded("speed_gemm", lambda: speed_gemms(prof, device, ceilings)))
    figures["seconds_kernels"] = time.perf_counter() - t0
    if cuda:
        torch.cuda.empty_cache()

    base.phase("data")
    from replication.data import eval_batches

    corpus, data_figures = common.shakespeare_with_figures()
    figures.update(data_figures)

    steps = prof.steps
    if prof.total_budget_s is not None:
        base.phase("calibration")
        t0 = time.perf_counter()
        deadline = started + prof.total_budget_s
        steps, calib = calibrate_steps(prof, corpus, device, deadline)
        figures.update(calib)
        figures["seconds_calibration"] = time.perf_counter() - t0
        print(f"[fp4] calibration: {calib} -> {steps} steps a run", file=sys.stderr, flush=True)
    figures["setup_steps"] = steps

    base.phase("training")
    t0 = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    for seed in prof.seeds:
        for arm in ARMS:
            res, model = train_arm(arm, seed, prof, steps, corpus, device)
            results[arm].append(res)
            print(f"[fp4] seed {seed} {arm}: {res}", file=sys.stderr, flush=True)
            if arm == "bf16" and seed == prof.seeds[0]:
                ids = eval_batches(corpus.eval, prof.batch_size, prof.seq_len, 1)[0]
                figures.update(
                    _guarded("cosine", lambda m=model, i=ids: capture_cosines(m, i, device))
                )
            del model
    figures.update(quality_figures(results))
    figures["seconds_training"] = time.perf_counter() - t0
    figures["seconds_total"] = time.perf_counter() - started
    return figures
